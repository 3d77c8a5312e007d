//! ONNX models compiled to Halo2 circuits: import, quantization, exact integer
//! inference and the model circuit.

pub mod calibrate;
pub mod circuit;
pub mod float;
pub mod graph;
pub mod input;
pub mod model;
pub mod onnx;
pub mod program;
pub mod quantize;
pub mod wide;

pub use circuit::{CircuitParams, ModelCircuit};
pub use model::CompiledModel;
pub use program::{Program, Settings, Witness};
