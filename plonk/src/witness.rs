//! Witness synthesis: runs a circuit's own layout code once and keeps the
//! advice values it assigns.

use halo2_proofs::circuit::Value;
use halo2_proofs::halo2curves::bn256::Fr;
use halo2_proofs::halo2curves::ff::{BatchInvert, Field};
use halo2_proofs::plonk::{
    Advice, Any, Assigned, Assignment, Challenge, Circuit, Column, ConstraintSystem, Error, Fixed, FloorPlanner,
    Instance, Selector,
};

use crate::ProveError;

/// Collects advice assignments; fixed cells, selectors and copies belong to
/// the proving key and are ignored.
struct Collector<'a> {
    advice: Vec<Vec<Assigned<Fr>>>,
    instances: &'a [&'a [Fr]],
    usable: usize,
    /// The first assignment outside the usable rows or without a value.
    fault: Option<String>,
}

impl Assignment<Fr> for Collector<'_> {
    fn enter_region<NR, N>(&mut self, _: N)
    where
        NR: Into<String>,
        N: FnOnce() -> NR,
    {
    }

    fn annotate_column<A, AR>(&mut self, _: A, _: Column<Any>)
    where
        A: FnOnce() -> AR,
        AR: Into<String>,
    {
    }

    fn exit_region(&mut self) {}

    fn enable_selector<A, AR>(&mut self, _: A, _: &Selector, _: usize) -> Result<(), Error>
    where
        A: FnOnce() -> AR,
        AR: Into<String>,
    {
        Ok(())
    }

    fn query_instance(&self, column: Column<Instance>, row: usize) -> Result<Value<Fr>, Error> {
        if row >= self.usable {
            return Err(Error::BoundsFailure);
        }
        let col = self.instances.get(column.index()).ok_or(Error::BoundsFailure)?;
        Ok(Value::known(col.get(row).copied().unwrap_or(Fr::ZERO)))
    }

    fn assign_advice<'v>(
        &mut self,
        column: Column<Advice>,
        row: usize,
        to: Value<Assigned<Fr>>,
    ) -> Value<&'v Assigned<Fr>> {
        if row >= self.usable {
            self.fault
                .get_or_insert_with(|| format!("advice assigned at row {row}, past the {} usable rows", self.usable));
            return Value::unknown();
        }
        let mut known = None;
        let _ = to.map(|v| known = Some(v));
        let Some(value) = known else {
            self.fault.get_or_insert_with(|| format!("advice column {} row {row} has no value", column.index()));
            return Value::unknown();
        };
        let cell = &mut self.advice[column.index()][row];
        *cell = value;
        // SAFETY: halo2-axiom's `Assignment` hands back a reference with a
        // caller-chosen lifetime. The cell lives in a column allocated once
        // at its full length and never resized, and the collector outlives
        // the synthesis that holds the reference, so the pointer stays valid
        // and nothing writes the cell while the layouter reads it.
        let ptr = cell as *const Assigned<Fr>;
        Value::known(unsafe { &*ptr })
    }

    fn assign_fixed(&mut self, _: Column<Fixed>, _: usize, _: Assigned<Fr>) {}

    fn copy(&mut self, _: Column<Any>, _: usize, _: Column<Any>, _: usize) {}

    fn fill_from_row(&mut self, _: Column<Fixed>, _: usize, _: Value<Assigned<Fr>>) -> Result<(), Error> {
        Ok(())
    }

    fn get_challenge(&self, _: Challenge) -> Value<Fr> {
        Value::unknown()
    }

    fn push_namespace<NR, N>(&mut self, _: N)
    where
        NR: Into<String>,
        N: FnOnce() -> NR,
    {
    }

    fn pop_namespace(&mut self, _: Option<String>) {}
}

/// The advice columns of `circuit` over `n` rows (the rows from `usable`
/// on are left zero for the blinding values).
pub fn synthesize<C: Circuit<Fr>>(
    circuit: &C,
    cs: &ConstraintSystem<Fr>,
    n: usize,
    usable: usize,
    instances: &[&[Fr]],
) -> Result<Vec<Vec<Fr>>, ProveError> {
    if cs.num_challenges() > 0 || cs.advice_column_phase().iter().any(|&p| p > 0) {
        return Err(ProveError::Unsupported("circuits with more than one phase or with challenges".into()));
    }
    let mut fresh = ConstraintSystem::default();
    let config = C::configure_with_params(&mut fresh, circuit.params());
    let mut collector =
        Collector { advice: vec![vec![Assigned::Zero; n]; cs.num_advice_columns()], instances, usable, fault: None };
    C::FloorPlanner::synthesize(&mut collector, circuit, config, cs.constants().clone())
        .map_err(|e| ProveError::Synthesis(format!("{e:?}")))?;
    if let Some(fault) = collector.fault {
        return Err(ProveError::Synthesis(fault));
    }
    Ok(evaluate_assigned(collector.advice))
}

/// Assigned values to field elements, with one batched inversion for all
/// the fractions.
fn evaluate_assigned(columns: Vec<Vec<Assigned<Fr>>>) -> Vec<Vec<Fr>> {
    let mut denominators: Vec<Fr> = columns.iter().flatten().filter_map(|a| a.denominator()).collect();
    denominators.iter_mut().batch_invert();
    let mut inv = denominators.into_iter();
    columns
        .into_iter()
        .map(|col| {
            col.into_iter()
                .map(|a| match a.denominator() {
                    Some(_) => a.numerator() * inv.next().expect("one inverse per fraction"),
                    None => a.numerator(),
                })
                .collect()
        })
        .collect()
}
