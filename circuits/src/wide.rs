//! Table functions over the whole proven range.
//!
//! A lookup table holds `2^B` keys, `[-R, R)` with `R = 2^(B-1)`, while a
//! range-checked value may take `2B` signed bits. A widened table function
//! splits its input `x` as `x = m·2^B + y` with `m = round(x / 2^B)` (a
//! range-checked division) and `y` in `[-R, R)`, so `m = 0` exactly where
//! `x` is inside the table, and `y` is always a valid key. Beyond the table
//! the function is extended in one of two ways, chosen by looking at the
//! table itself:
//!
//! - **periodic** functions, `f(x + 2^B) = f(x) + d` (Floor, Ceil, Round),
//!   are `f(y) + d·m`, exact everywhere;
//! - otherwise each side gets the line `a·x + b` that the function follows
//!   far from zero (Relu, Gelu, SiLU, Softplus, LeakyRelu: slopes; Sigmoid,
//!   Tanh, Erf: constants). Since `a·x + b = (a·2^B·m + b) + a·y`, the
//!   result is `[m = 0]·f(y) + G(m) + [m > 0]·a⁺·y + [m < 0]·a⁻·y`, where
//!   `[m = 0]`, `[m > 0]`, `[m < 0]` and `G` are tables of `m` and `a·y` a
//!   table of `y` (or `y` itself for a slope of 1): every term is a table
//!   entry rounded once, so the result is within a quantum and a half of the
//!   function. A side the function does not follow a line on (Exp above,
//!   Softsign, Log) is held at its value at the table's edge, and the
//!   program records that precision is lost there.

use crate::program::{Table, TABLE_LIMIT};

/// How a widened table function continues outside its table.
#[derive(Clone, Debug, PartialEq)]
pub enum Extension {
    /// `f(x + 2^B) = f(x) + step` for every key.
    Periodic { step: i64 },
    /// A line on each side.
    Lines { below: Line, above: Line },
}

/// `slope·x + intercept` on one side of the table, `x` and the result in
/// quanta: the line the function follows, or its value at the table's edge.
#[derive(Clone, Debug, PartialEq)]
pub struct Line {
    pub slope: f64,
    pub intercept: f64,
    /// Whether the function follows the line to half a quantum.
    pub follows: bool,
    /// Largest difference from the (unrounded) function over the side, in
    /// quanta, and the input where it was seen.
    pub worst: f64,
    pub worst_at: i64,
}

/// Sample keys per side when fitting and checking a line.
const SAMPLES: u32 = 160;

/// The extension of `table` at the given scale and lookup bits.
pub fn extension(table: &Table, scale: u32, bits: u32) -> Extension {
    let f = |u: i64| table.value(u, scale);
    if let Some(step) = periodic_step(&f, bits) {
        return Extension::Periodic { step };
    }
    let half = 1i64 << (bits - 1);
    let far = (1i64 << (2 * bits - 1)) - 1;
    let real = |u: i64| table.unrounded(u, scale);
    Extension::Lines { below: side(&real, -half - 1, -far), above: side(&real, half, far) }
}

/// `d` where `f(u + k·2^B) = f(u) + k·d` on sampled keys and shifts.
fn periodic_step(f: &impl Fn(i64) -> i64, bits: u32) -> Option<i64> {
    let period = 1i64 << bits;
    let half = period / 2;
    let step = f(-half + period) - f(-half);
    let keys = (0..=256).map(|i| -half + i * (period - 1) / 256);
    let max_k = (1i64 << (bits - 1)) - 1;
    for u in keys {
        for k in [1, -1, 2, 7, -13, max_k / 3, -max_k / 2, max_k - 1] {
            let expect = f(u).checked_add(step.checked_mul(k)?)?;
            if f(u + k * period) != expect {
                return None;
            }
        }
    }
    Some(step)
}

/// The function's course on one side, from the table's edge `from` out to
/// `to` (`f` unrounded, in quanta): the line through both ends when the
/// function follows it to half a quantum and its values stay table entries,
/// else its value at the edge.
fn side(f: &impl Fn(i64) -> f64, from: i64, to: i64) -> Line {
    let (y0, y1) = (f(from), f(to));
    let slope = (y1 - y0) / (to - from) as f64;
    let edge = y0.round();
    // The simplest line that serves: a constant (no slope term in the
    // circuit), a whole slope (1: no table for a·y), or the line itself.
    let whole = slope.round();
    let candidates = [(0.0, edge), (whole, y0 - whole * from as f64), (slope, y0 - slope * from as f64)];
    for (slope, intercept) in candidates {
        let (worst, worst_at) = strays(f, |u| slope * u as f64 + intercept, from, to);
        let bounded = (slope * to as f64 + intercept).abs() < TABLE_LIMIT as f64;
        if worst <= 0.5 && bounded {
            return Line { slope, intercept, follows: true, worst, worst_at };
        }
    }
    let (worst, worst_at) = strays(f, |_| edge, from, to);
    Line { slope: 0.0, intercept: edge, follows: worst <= 0.5, worst, worst_at }
}

/// The largest difference between `f` and `line` over keys from the table's
/// edge out to `to` (denser near the edge, where functions still bend), and
/// where it is.
fn strays(f: &impl Fn(i64) -> f64, line: impl Fn(i64) -> f64, from: i64, to: i64) -> (f64, i64) {
    let span = (to - from).unsigned_abs() as f64;
    let dir = (to - from).signum();
    let near = (0..64).map(|i| from + dir * i);
    let far = (0..=SAMPLES).map(|i| from + dir * span.powf(f64::from(i) / f64::from(SAMPLES)).round() as i64);
    near.chain(far)
        .map(|u| ((line(u) - f(u)).abs(), u))
        .fold((0.0, from), |worst, x| if x.0 > worst.0 { x } else { worst })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::Activation;

    fn ext(act: Activation) -> Extension {
        extension(&Table::Fn(act), 7, 12)
    }

    fn lines(e: Extension) -> (Line, Line) {
        match e {
            Extension::Lines { below, above } => (below, above),
            e => panic!("expected lines, got {e:?}"),
        }
    }

    #[test]
    fn rounding_functions_are_periodic() {
        for act in [Activation::Floor, Activation::Ceil, Activation::Round] {
            assert_eq!(ext(act), Extension::Periodic { step: 1 << 12 }, "{act:?}");
        }
        assert!(!matches!(ext(Activation::Relu), Extension::Periodic { .. }));
    }

    #[test]
    fn functions_with_asymptotes_follow_their_lines() {
        for act in [
            Activation::Relu,
            Activation::LeakyRelu { alpha: 0.01 },
            Activation::Sigmoid,
            Activation::Tanh,
            Activation::Erf,
            Activation::Gelu { tanh: false },
            Activation::Softplus,
            Activation::Elu { alpha: 1.0 },
            Activation::HardSwish,
            Activation::Mish,
        ] {
            let (below, above) = lines(ext(act));
            assert!(below.follows && above.follows, "{act:?}: {below:?} {above:?}");
        }
        let (below, above) = lines(ext(Activation::Relu));
        assert_eq!((below.slope, below.intercept), (0.0, 0.0));
        assert_eq!((above.slope, above.intercept), (1.0, 0.0));
        let (_, above) = lines(ext(Activation::Sigmoid));
        assert_eq!((above.slope, above.intercept), (0.0, 128.0));
        let (below, above) = lines(ext(Activation::Gelu { tanh: false }));
        assert_eq!((below.slope, above.slope), (0.0, 1.0));
    }

    #[test]
    fn functions_without_a_line_are_held_at_the_edge_and_say_so() {
        let (below, above) = lines(ext(Activation::Softsign));
        assert!(!above.follows && !below.follows);
        assert_eq!(above.slope, 0.0);
        assert_eq!(above.intercept, Table::Fn(Activation::Softsign).value(1 << 11, 7) as f64);
        let (below, above) = lines(ext(Activation::Exp));
        assert!(below.follows, "exp tends to 0 below");
        assert!(!above.follows);
    }
}
