//! Float inference through tract: the accuracy reference for the quantized model.

use anyhow::{anyhow, bail, Context, Result};
use tract_onnx::prelude::*;

/// A float model ready to run, with its input shapes fixed.
pub struct FloatModel {
    plan: std::sync::Arc<TypedRunnableModel>,
    shapes: Vec<Vec<usize>>,
}

impl FloatModel {
    pub fn load(onnx: &[u8], shapes: &[Vec<usize>]) -> Result<Self> {
        let mut model = tract_onnx::onnx()
            .model_for_read(&mut &onnx[..])
            .map_err(|e| anyhow!("tract could not load the model: {e}"))?;
        for (i, s) in shapes.iter().enumerate() {
            model = model.with_input_fact(i, f32::fact(s).into()).map_err(|e| anyhow!("input {i}: {e}"))?;
        }
        // Decluttering is enough for a reference run; the optimizer rewrites
        // more and has refused some valid graphs.
        let plan = model
            .into_typed()
            .and_then(|m| m.into_decluttered())
            .and_then(|m| m.into_runnable())
            .map_err(|e| anyhow!("tract could not prepare the model: {e:?}"))?;
        Ok(FloatModel { plan, shapes: shapes.to_vec() })
    }

    /// Runs the model on flat float inputs; returns flat float outputs.
    pub fn run(&self, inputs: &[Vec<f64>]) -> Result<Vec<Vec<f64>>> {
        if inputs.len() != self.shapes.len() {
            bail!("the model takes {} input tensor(s) but {} were given", self.shapes.len(), inputs.len());
        }
        let mut values = TVec::new();
        for (i, (data, shape)) in inputs.iter().zip(&self.shapes).enumerate() {
            let n: usize = shape.iter().product();
            if data.len() != n {
                bail!("input {i} has {} values but the model expects shape {shape:?} ({n} values)", data.len());
            }
            let v: Vec<f32> = data.iter().map(|&x| x as f32).collect();
            let t = Tensor::from_shape(shape, &v).context("building an input tensor")?;
            values.push(t.into_tvalue());
        }
        let out = self.plan.run(values).map_err(|e| anyhow!("float inference failed: {e}"))?;
        out.iter()
            .map(|t| {
                let t = t.cast_to::<f32>().map_err(|e| anyhow!("{e}"))?;
                let view = t.to_plain_array_view::<f32>().map_err(|e| anyhow!("{e}"))?;
                Ok(view.iter().map(|&v| v as f64).collect())
            })
            .collect()
    }
}
