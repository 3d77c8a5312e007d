//! Float inference through tract: the accuracy reference for the quantized model.

use anyhow::{anyhow, bail, Context, Result};
use tract_onnx::prelude::*;
use tract_onnx::tract_hir::infer::Factoid;

/// A float model ready to run, with its input shapes fixed.
pub struct FloatModel {
    plan: std::sync::Arc<TypedRunnableModel>,
    shapes: Vec<Vec<usize>>,
    types: Vec<DatumType>,
}

impl FloatModel {
    pub fn load(onnx: &[u8], shapes: &[Vec<usize>]) -> Result<Self> {
        let mut model = tract_onnx::onnx()
            .model_for_read(&mut &onnx[..])
            .map_err(|e| anyhow!("tract could not load the model: {e}"))?;
        let mut types = Vec::new();
        for (i, s) in shapes.iter().enumerate() {
            // Integer and bool inputs keep their declared type; any other is f32.
            let declared = model.input_fact(i).ok().and_then(|f| f.datum_type.concretize());
            let dt = match declared {
                Some(dt) if dt.is_integer() || dt == DatumType::Bool => dt,
                _ => f32::datum_type(),
            };
            model = model
                .with_input_fact(i, InferenceFact::dt_shape(dt, s.as_slice()))
                .map_err(|e| anyhow!("input {i}: {e}"))?;
            types.push(dt);
        }
        // Decluttering is enough for a reference run; the optimizer rewrites
        // more and has refused some valid graphs.
        let plan = model
            .into_typed()
            .and_then(|m| m.into_decluttered())
            .and_then(|m| m.into_runnable())
            .map_err(|e| anyhow!("tract could not prepare the model: {e:?}"))?;
        Ok(FloatModel { plan, shapes: shapes.to_vec(), types })
    }

    /// Runs the model on flat float inputs; returns flat float outputs.
    pub fn run(&self, inputs: &[Vec<f64>]) -> Result<Vec<Vec<f64>>> {
        if inputs.len() != self.shapes.len() {
            bail!("the model takes {} input tensor(s) but {} were given", self.shapes.len(), inputs.len());
        }
        let mut values = TVec::new();
        for (i, ((data, shape), &dt)) in inputs.iter().zip(&self.shapes).zip(&self.types).enumerate() {
            let n: usize = shape.iter().product();
            if data.len() != n {
                bail!("input {i} has {} values but the model expects shape {shape:?} ({n} values)", data.len());
            }
            let v: Vec<f32> = data.iter().map(|&x| x as f32).collect();
            let t = Tensor::from_shape(shape, &v).context("building an input tensor")?;
            let t = if dt == f32::datum_type() {
                t
            } else {
                t.cast_to_dt(dt).map_err(|e| anyhow!("input {i}: {e}"))?.into_owned()
            };
            values.push(t.into_tvalue());
        }
        // tract asserts some preconditions (GatherND's negative indices)
        // rather than returning errors: a panic there is this input's error.
        let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.plan.run(values)))
            .map_err(|_| anyhow!("float inference failed: tract panicked on this input"))?;
        let out = run.map_err(|e| anyhow!("float inference failed: {e}"))?;
        out.iter()
            .map(|t| {
                let t = t.cast_to::<f32>().map_err(|e| anyhow!("{e}"))?;
                let view = t.to_plain_array_view::<f32>().map_err(|e| anyhow!("{e}"))?;
                Ok(view.iter().map(|&v| v as f64).collect())
            })
            .collect()
    }
}
