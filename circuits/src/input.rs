//! Input files: EZKL's `{"input_data": [[...flat floats...], ...]}` layout,
//! one flat array per model input.

use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;

/// Parses an input document into one flat float array per model input.
pub fn parse_input(text: &str) -> Result<Vec<Vec<f64>>> {
    let doc: Value = serde_json::from_str(text).context("the input is not valid JSON")?;
    let data = doc
        .get("input_data")
        .ok_or_else(|| anyhow!("the input has no `input_data` field (expected {{\"input_data\": [[...]]}})"))?;
    // Empty for a model with no runtime input.
    let arrays = data.as_array().ok_or_else(|| anyhow!("`input_data` must be an array of arrays"))?;
    arrays
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let mut flat = Vec::new();
            flatten(a, &mut flat).with_context(|| format!("input_data[{i}]"))?;
            Ok(flat)
        })
        .collect()
}

fn flatten(v: &Value, out: &mut Vec<f64>) -> Result<()> {
    match v {
        Value::Array(items) => items.iter().try_for_each(|x| flatten(x, out)),
        Value::Number(n) => {
            let x = n.as_f64().ok_or_else(|| anyhow!("number {n} is not representable"))?;
            out.push(x);
            Ok(())
        }
        other => bail!("value {other} at position {} is not a number", out.len()),
    }
}

/// Reads and parses an input file.
pub fn read_input(path: &std::path::Path) -> Result<Vec<Vec<f64>>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    parse_input(&text).with_context(|| format!("parsing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ezkl_layout() {
        let v = parse_input(r#"{"input_data": [[1, 2.5, -3], [[4], [5]]]}"#).unwrap();
        assert_eq!(v, vec![vec![1.0, 2.5, -3.0], vec![4.0, 5.0]]);
    }

    #[test]
    fn no_arrays_for_a_model_without_inputs() {
        assert_eq!(parse_input(r#"{"input_data": []}"#).unwrap(), Vec::<Vec<f64>>::new());
    }

    #[test]
    fn rejects_bad_input() {
        assert!(parse_input("{").is_err());
        assert!(parse_input(r#"{"data": []}"#).is_err());
        let e = parse_input(r#"{"input_data": [[1, "NaN"]]}"#).unwrap_err();
        assert!(format!("{e:#}").contains("not a number"), "{e:#}");
    }
}
