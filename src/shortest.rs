//! The shortest decimal that reads back as a given double, and the closest to it among those
//! (what Python's `float.__repr__` prints): the Schubfach method of Raffaello Giulietti
//! ("The Schubfach way to render doubles", 2020).
//!
//! Why our own: the layout step of the formatting crate used before moved its digits with a
//! `memmove` and a `memset` per value, and on this project's AVX-512 machines the next value's
//! SIMD digit code then ran about twice as slow (a float cost ~40 ns inside `dumps`, ~17 ns in a
//! bare loop). Here the digits are computed in registers and `format::write_float` stores them
//! straight into the output, without a call or a reload.
//!
//! The method, for a finite positive double `v = c * 2^q`: the decimals that read back as `v`
//! fill its rounding interval. Scaled by `10^-k` (`k = floor(log10(2^q))`) that interval is
//! between 1 and 10 units wide, so it holds at most one multiple of 10: if it holds one, that
//! multiple (with its trailing zeros removed) is the shortest; otherwise the shortest have as
//! many digits as `floor(v * 10^-k)` and the closest is that integer or the next. The scaled
//! values are computed with a 126-bit approximation of `10^-k` and rounded to odd, which keeps
//! every comparison with an even number exact.

/// Exponents of ten in the table: `10^e` for every `e = -k` a double needs.
const E_MIN: i32 = -292;
const E_MAX: i32 = 324;

/// `g(e) = floor(10^e / 2^r) + 1` with `r = floor(log2(10^e)) - 125`: 126 bits, for
/// `e` in `E_MIN..=E_MAX`. Computed by the compiler (`pow10_table`); checked by the tests.
static POW10: [u128; (E_MAX - E_MIN + 1) as usize] = pow10_table();

/// `floor(e * log10(2))`, exact for `|e| <= 5456` (checked by the tests in a wider range
/// than a double needs).
#[inline(always)]
const fn floor_log10_pow2(e: i32) -> i32 {
    ((e as i64 * 661_971_961_083) >> 41) as i32
}

/// `floor(e * log10(2) - log10(4 / 3))`: `k` for the powers of two, whose interval is
/// narrower below.
#[inline(always)]
const fn floor_log10_three_quarters_pow2(e: i32) -> i32 {
    ((e as i64 * 661_971_961_083 - 274_743_187_321) >> 41) as i32
}

/// `floor(e * log2(10))`.
#[inline(always)]
const fn floor_log2_pow10(e: i32) -> i32 {
    ((e as i64 * 913_124_641_741) >> 38) as i32
}

/// Limbs of the compile-time big integers (64 bits each, least significant first): enough
/// for `2^1200`, above the largest value used (`10^324 < 2^1077`).
const LIMBS: usize = 20;
const BIG_SHIFT: i32 = 1200;

const fn pow10_table() -> [u128; (E_MAX - E_MIN + 1) as usize] {
    let mut table = [0u128; (E_MAX - E_MIN + 1) as usize];
    // e >= 0: 10^e exactly, multiplied up one step at a time.
    let mut big = [0u64; LIMBS];
    big[0] = 1;
    let mut e = 0;
    while e <= E_MAX {
        let r = floor_log2_pow10(e) - 125;
        table[(e - E_MIN) as usize] = top_bits(&big, r) + 1;
        big = mul_small(big, 10);
        e += 1;
    }
    // e < 0: floor(2^1200 / 10^-e), divided down one step at a time; floor(floor(a/b)/c)
    // is floor(a/(b*c)), so shifting it right gives floor(2^-r / 10^-e) exactly.
    let mut big = [0u64; LIMBS];
    big[(BIG_SHIFT / 64) as usize] = 1 << (BIG_SHIFT % 64);
    let mut e = -1;
    while e >= E_MIN {
        big = div_small(big, 10);
        let r = floor_log2_pow10(e) - 125;
        table[(e - E_MIN) as usize] = top_bits(&big, BIG_SHIFT + r) + 1;
        e -= 1;
    }
    table
}

const fn mul_small(mut big: [u64; LIMBS], m: u64) -> [u64; LIMBS] {
    let mut carry = 0u128;
    let mut i = 0;
    while i < LIMBS {
        let x = big[i] as u128 * m as u128 + carry;
        big[i] = x as u64;
        carry = x >> 64;
        i += 1;
    }
    big
}

const fn div_small(mut big: [u64; LIMBS], d: u64) -> [u64; LIMBS] {
    let mut rem = 0u128;
    let mut i = LIMBS;
    while i > 0 {
        i -= 1;
        let x = (rem << 64) | big[i] as u128;
        big[i] = (x / d as u128) as u64;
        rem = x % d as u128;
    }
    big
}

/// `floor(big / 2^shift)` (a left shift when `shift` is negative), which must fit 128 bits.
const fn top_bits(big: &[u64; LIMBS], shift: i32) -> u128 {
    let mut result = 0u128;
    let mut bit = 0;
    while bit < 128 {
        let source = bit + shift;
        if source >= 0 && source < (LIMBS * 64) as i32 {
            let limb = big[(source / 64) as usize];
            if (limb >> (source % 64)) & 1 == 1 {
                result |= 1 << bit;
            }
        }
        bit += 1;
    }
    result
}

/// `g * cp / 2^127` rounded to odd: the floor, with its lowest bit set when anything was cut
/// off, so that comparing it with an even number gives the same answer as the exact value.
/// As in the method's reference implementation, `g` is split into 63-bit halves and the low
/// half's product contributes only its high word: the `+ 1` of a table entry whose power of
/// ten is an exact integer then vanishes, and exact values (ties) stay exact.
#[inline(always)]
fn round_to_odd(g: u128, cp: u64) -> u64 {
    const LOW63: u64 = (1 << 63) - 1;
    let g1 = (g >> 63) as u64;
    let g0 = g as u64 & LOW63;
    let x1 = ((g0 as u128 * cp as u128) >> 64) as u64;
    let y = g1 as u128 * cp as u128;
    let z = ((y as u64) >> 1) + x1;
    let floor = (y >> 64) as u64 + (z >> 63);
    floor | ((z & LOW63) + LOW63) >> 63
}

/// For a finite double `v > 0` given as its exponent bits `exp_bits` (0 for a subnormal) and
/// its 52 fraction bits: `(digits, exponent)` with `digits * 10^exponent` the shortest decimal
/// that reads back as `v`, the closest to `v` among those (an exact tie goes to the even
/// digits). `digits` is below `10^17` and may end in zeros.
#[inline(always)]
pub fn shortest(exp_bits: u32, fraction: u64) -> (u64, i32) {
    let (c, q) = if exp_bits == 0 {
        (fraction, -1074)
    } else {
        (fraction | 1 << 52, exp_bits as i32 - 1075)
    };
    // Interval endpoints belong to it when c is even (a reader rounds ties to even).
    let open = c & 1;
    let cb = c << 2;
    let cbr = cb + 2;
    // A power of two (above the smallest normal) has its predecessor closer: a quarter ulp.
    let (cbl, k) = if fraction != 0 || exp_bits <= 1 {
        (cb - 2, floor_log10_pow2(q))
    } else {
        (cb - 1, floor_log10_three_quarters_pow2(q))
    };
    let h = q + floor_log2_pow10(-k) + 2;
    let g = POW10[(-k - E_MIN) as usize];
    // Four times v, and the interval's ends, in units of 10^k.
    let vb = round_to_odd(g, cb << h);
    let vbl = round_to_odd(g, cbl << h);
    let vbr = round_to_odd(g, cbr << h);
    let s = vb >> 2;
    // The multiples of ten around v: if exactly one is inside, it is the shortest.
    let sp10 = s / 10 * 10;
    let tp10 = sp10 + 10;
    let low_in = vbl + open <= sp10 << 2;
    let high_in = (tp10 << 2) + open <= vbr;
    // Otherwise s or s + 1: the one inside, or the closer when both are (a tie to the even).
    let t = s + 1;
    let s_in = vbl + open <= s << 2;
    let t_in = (t << 2) + open <= vbr;
    let mid = (s + t) << 1;
    let closer_s = (vb < mid) | ((vb == mid) & (s & 1 == 0));
    let pick_s = (s_in & !t_in) | ((s_in == t_in) & closer_s);
    let digits = select(
        low_in != high_in,
        tp10 - 10 * low_in as u64,
        t - pick_s as u64,
    );
    (digits, k)
}

/// `a` if `cond`, else `b`, without a branch: which case applies is as good as random for the
/// values of a typical document, and a mispredicted branch costs more than both cases.
#[inline(always)]
fn select(cond: bool, a: u64, b: u64) -> u64 {
    let mask = (cond as u64).wrapping_neg();
    (a & mask) | (b & !mask)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cmp::Ordering;

    fn big(n: u64) -> [u64; LIMBS] {
        let mut b = [0u64; LIMBS];
        b[0] = n;
        b
    }

    fn cmp(a: &[u64; LIMBS], b: &[u64; LIMBS]) -> Ordering {
        a.iter().rev().cmp(b.iter().rev())
    }

    /// Walks `x = a * base^e` for e = 0, 1, ... and the largest k with `unit^k <= x`, handing
    /// each (e, k) to `check`: exact floor logarithms from integer comparisons alone.
    fn walk_floor_log(a: u64, base: u64, unit: u64, steps: u32, mut check: impl FnMut(i32, i32)) {
        let mut x = big(a);
        let mut next = big(unit); // unit^(k+1)
        let mut k = 0;
        for e in 0..steps {
            while cmp(&next, &x) != Ordering::Greater {
                next = mul_small(next, unit);
                k += 1;
            }
            check(e as i32, k);
            x = mul_small(x, base);
        }
    }

    #[test]
    fn floor_logs_are_exact() {
        // Non-negative exponents by the walk; negative ones from floor(-x) = -floor(x) - 1
        // (x = e * log is never an integer for e != 0), checked against the same walk.
        walk_floor_log(1, 2, 10, 1100, |e, k| {
            assert_eq!(floor_log10_pow2(e), k, "log10 2^{e}");
            if e > 0 {
                assert_eq!(floor_log10_pow2(-e), -k - 1, "log10 2^-{e}");
            }
        });
        walk_floor_log(1, 10, 2, 330, |e, k| {
            assert_eq!(floor_log2_pow10(e), k, "log2 10^{e}");
            if e > 0 {
                assert_eq!(floor_log2_pow10(-e), -k - 1, "log2 10^-{e}");
            }
        });
        // 3/4 * 2^e for e >= 2 (an integer): 3 * 2^(e-2).
        walk_floor_log(3, 2, 10, 1100, |e, k| {
            assert_eq!(
                floor_log10_three_quarters_pow2(e + 2),
                k,
                "3/4 * 2^{}",
                e + 2
            );
        });
        // 3/4 * 2^-e = 3 / 2^(e+2) < 1: floor(log10) = -m with m the smallest such that
        // 2^(e+2) <= 3 * 10^m.
        let mut two = big(4); // 2^(e+2)
        let mut three_ten = big(3); // 3 * 10^m
        let mut m = 0;
        for e in 0..1100 {
            while cmp(&two, &three_ten) == Ordering::Greater {
                three_ten = mul_small(three_ten, 10);
                m += 1;
            }
            assert_eq!(floor_log10_three_quarters_pow2(-e), -m, "3/4 * 2^-{e}");
            two = mul_small(two, 2);
        }
    }

    #[test]
    fn table_entries_bracket_the_powers_of_ten() {
        // g - 1 = floor(10^e * 2^-r): (g - 1) * D <= N < g * D with N / D = 10^e * 2^-r.
        for e in E_MIN..=E_MAX {
            let g = POW10[(e - E_MIN) as usize];
            assert_eq!(128 - g.leading_zeros(), 126, "10^{e} has 126 bits");
            let r = floor_log2_pow10(e) - 125;
            let (mut n, mut d) = (big(1), big(1));
            for _ in 0..e.unsigned_abs() {
                if e > 0 {
                    n = mul_small(n, 10)
                } else {
                    d = mul_small(d, 10)
                }
            }
            for _ in 0..r.unsigned_abs() {
                if r > 0 {
                    d = mul_small(d, 2)
                } else {
                    n = mul_small(n, 2)
                }
            }
            let times = |g: u128| {
                let mut p = mul_small(d, (g >> 64) as u64);
                for _ in 0..64 {
                    p = mul_small(p, 2);
                }
                add(p, mul_small(d, g as u64))
            };
            assert_ne!(
                cmp(&times(g - 1), &n),
                Ordering::Greater,
                "10^{e}: g - 1 too big"
            );
            assert_eq!(cmp(&times(g), &n), Ordering::Greater, "10^{e}: g too small");
        }
    }

    fn add(a: [u64; LIMBS], b: [u64; LIMBS]) -> [u64; LIMBS] {
        let mut out = [0u64; LIMBS];
        let mut carry = 0u128;
        for i in 0..LIMBS {
            let x = a[i] as u128 + b[i] as u128 + carry;
            out[i] = x as u64;
            carry = x >> 64;
        }
        out
    }
}
