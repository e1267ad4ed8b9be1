//! Where a chain keeps a link: inline when it is small, boxed when it is not.
//!
//! A step with an ordinary closure fits in a dozen words, so the chain's queue holds it
//! by value and adding a callback costs no allocation of its own; a step too large or
//! over-aligned for the slot falls back to a `Box`.

use std::ops::{Deref, DerefMut};

use super::step::Link;

/// Words of the inline slot, one of which holds the vtable pointer: room for a step
/// with a `u64` result, a site, and a closure capturing several words. Every link is
/// moved a few times on its way through the queue, so the slot is no larger than that.
const WORDS: usize = 10;

type Inline = stack_dst::Value<dyn Link, stack_dst::buffers::ConstArrayBuf<usize, WORDS>>;

/// One link of a chain, owned by the chain.
pub(crate) enum LinkSlot {
    Inline(Inline),
    Boxed(Box<dyn Link>),
}

impl LinkSlot {
    /// Stores `link` inline if it fits, else on the heap.
    #[inline]
    pub(crate) fn new<L: Link + 'static>(link: L) -> Self {
        // Checked here, on constants, because the inline slot asserts its alignment at run time.
        if align_of::<L>() <= align_of::<usize>() && size_of::<L>() < WORDS * size_of::<usize>() {
            match Inline::new_stable(link, |l| l as &dyn Link) {
                Ok(inline) => Self::Inline(inline),
                Err(link) => Self::Boxed(Box::new(link)),
            }
        } else {
            Self::Boxed(Box::new(link))
        }
    }
}

impl Deref for LinkSlot {
    type Target = dyn Link;

    #[inline]
    fn deref(&self) -> &Self::Target {
        match self {
            Self::Inline(link) => &**link,
            Self::Boxed(link) => &**link,
        }
    }
}

impl DerefMut for LinkSlot {
    #[inline]
    fn deref_mut(&mut self) -> &mut Self::Target {
        match self {
            Self::Inline(link) => &mut **link,
            Self::Boxed(link) => &mut **link,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::defer::step::Holder;

    #[test]
    fn a_small_link_is_stored_inline_and_a_large_one_boxed() {
        let site = std::panic::Location::caller();
        let small = LinkSlot::new(Holder::new(Ok(7_u64), site));
        assert!(matches!(small, LinkSlot::Inline(_)));
        let large = LinkSlot::new(Holder::new(Ok([0_u64; 32]), site));
        assert!(matches!(large, LinkSlot::Boxed(_)));
        let mut small = small;
        let value = crate::defer::step::take_result::<u64>(&mut *small);
        assert_eq!(value.ok(), Some(7));
    }
}
