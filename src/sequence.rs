//! Wrapping sequence numbers and millisecond timestamps.
//!
//! KCP's `sn`, `una` and `ts` fields are 32-bit counters that wrap. Two values
//! are ordered by the sign of their wrapping difference (RFC 1982 "serial
//! number arithmetic"), which is correct as long as the values being compared
//! are less than 2^31 apart. Wrapping these in newtypes makes a raw `a > b` on
//! the underlying integers impossible to write by accident: the only ordering
//! these types offer is the half-range one.

use core::cmp::Ordering;
use core::fmt;
use core::ops::{Add, AddAssign, Sub};

macro_rules! wrapping_u32 {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
        pub struct $name(u32);

        impl $name {
            /// Wraps a raw wire value.
            #[inline]
            pub const fn new(raw: u32) -> Self {
                Self(raw)
            }

            /// The raw wire value.
            #[inline]
            pub const fn get(self) -> u32 {
                self.0
            }

            /// Signed distance from `other` to `self`, `self - other`, taken
            /// over the half range: positive when `self` comes after `other`.
            #[inline]
            pub const fn diff(self, other: Self) -> i32 {
                self.0.wrapping_sub(other.0) as i32
            }
        }

        impl PartialOrd for $name {
            #[inline]
            fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
                Some(self.diff(*other).cmp(&0))
            }
        }

        impl Add<u32> for $name {
            type Output = Self;
            #[inline]
            fn add(self, rhs: u32) -> Self {
                Self(self.0.wrapping_add(rhs))
            }
        }

        impl AddAssign<u32> for $name {
            #[inline]
            fn add_assign(&mut self, rhs: u32) {
                self.0 = self.0.wrapping_add(rhs);
            }
        }

        impl Sub<u32> for $name {
            type Output = Self;
            #[inline]
            fn sub(self, rhs: u32) -> Self {
                Self(self.0.wrapping_sub(rhs))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }
    };
}

wrapping_u32!(
    /// A segment sequence number (`sn`, `una`), ordered over the half range.
    Seq
);

wrapping_u32!(
    /// A millisecond timestamp (`ts`, `current`), ordered over the half range.
    ///
    /// The clock is whatever the caller feeds to `update`; it may start
    /// anywhere and wraps every 49.7 days.
    Timestamp
);

impl Seq {
    /// Number of sequence numbers from `start` up to (not including) `self`,
    /// or 0 when `self` is not after `start`.
    #[inline]
    pub fn distance_from(self, start: Seq) -> u32 {
        let d = self.diff(start);
        if d > 0 {
            d as u32
        } else {
            0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordering_wraps_across_u32_max() {
        let a = Seq::new(u32::MAX - 1);
        let b = a + 3; // wrapped to 1
        assert_eq!(b.get(), 1);
        assert!(b > a);
        assert!(a < b);
        assert_eq!(b.diff(a), 3);
        assert_eq!(a.diff(b), -3);
        assert_eq!(b.distance_from(a), 3);
        assert_eq!(a.distance_from(b), 0);
    }

    #[test]
    fn half_range_is_the_horizon() {
        let a = Timestamp::new(0);
        assert!(Timestamp::new(0x7fff_ffff) > a);
        // Exactly half the range away reads as "before": the sign bit decides.
        assert!(Timestamp::new(0x8000_0000) < a);
        assert!(Timestamp::new(0xffff_ffff) < a);
    }

    #[test]
    fn equal_values_compare_equal() {
        let a = Seq::new(42);
        assert_eq!(a.partial_cmp(&Seq::new(42)), Some(Ordering::Equal));
        assert!(a <= Seq::new(42) && a >= Seq::new(42));
    }

    #[test]
    fn subtraction_wraps() {
        assert_eq!((Seq::new(0) - 1).get(), u32::MAX);
        let mut t = Timestamp::new(u32::MAX);
        t += 2;
        assert_eq!(t.get(), 1);
    }
}
