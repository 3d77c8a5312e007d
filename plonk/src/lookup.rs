//! The lookup argument's permutation, as a plain function on host values:
//! the CPU backend runs it and other backends are tested against it.

use halo2_proofs::halo2curves::bn256::Fr;
use rayon::prelude::*;

use crate::backend::Unmatched;

/// Arranges `input` and `table` (the usable rows) into (A', S'):
/// A' is the input sorted, so that equal values form runs; S' holds, on the
/// first row of every run, that value taken from the table, and the table's
/// other values on the remaining rows in ascending order. The result is a
/// function of the two multisets alone, so it is the same on every run and
/// every thread count.
pub fn permute(input: &[Fr], table: &[Fr]) -> Result<(Vec<Fr>, Vec<Fr>), Unmatched> {
    assert_eq!(input.len(), table.len(), "input and table cover the same rows");
    let mut a = input.to_vec();
    a.par_sort_unstable();
    let mut s = table.to_vec();
    s.par_sort_unstable();

    // Walk the sorted table once: for each distinct input value take one
    // equal table entry; every other table entry is left over.
    let mut leftover = Vec::with_capacity(s.len());
    let mut starts = Vec::new();
    let mut t = 0;
    for (i, v) in a.iter().enumerate() {
        if i > 0 && a[i - 1] == *v {
            continue;
        }
        while t < s.len() && s[t] < *v {
            leftover.push(s[t]);
            t += 1;
        }
        if t == s.len() || s[t] != *v {
            let row = input.iter().position(|x| x == v).expect("a sorted value comes from the input");
            return Err(Unmatched { row });
        }
        t += 1;
        starts.push(i);
    }
    leftover.extend_from_slice(&s[t..]);

    let mut permuted_table = Vec::with_capacity(a.len());
    let mut rest = leftover.into_iter();
    let mut next_start = starts.iter().peekable();
    for (i, v) in a.iter().enumerate() {
        if next_start.peek() == Some(&&i) {
            next_start.next();
            permuted_table.push(*v);
        } else {
            permuted_table.push(rest.next().expect("as many leftovers as repeated inputs"));
        }
    }
    Ok((a, permuted_table))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(v: &[u64]) -> Vec<Fr> {
        v.iter().map(|&x| Fr::from(x)).collect()
    }

    #[test]
    fn runs_start_with_their_table_value_and_the_multisets_are_kept() {
        let input = f(&[3, 1, 3, 3, 0, 1]);
        let table = f(&[0, 1, 2, 3, 4, 5]);
        let (a, s) = permute(&input, &table).unwrap();
        assert_eq!(a, f(&[0, 1, 1, 3, 3, 3]));
        for i in 0..a.len() {
            // The lookup argument's row constraint.
            assert!(a[i] == s[i] || (i > 0 && a[i] == a[i - 1]), "row {i}");
        }
        assert_eq!(a[0], s[0]);
        let mut sorted = s.clone();
        sorted.sort();
        assert_eq!(sorted, f(&[0, 1, 2, 3, 4, 5]));
    }

    #[test]
    fn a_value_missing_from_the_table_names_its_row() {
        let input = f(&[1, 9, 1]);
        let table = f(&[0, 1, 2]);
        assert_eq!(permute(&input, &table), Err(Unmatched { row: 1 }));
    }
}
