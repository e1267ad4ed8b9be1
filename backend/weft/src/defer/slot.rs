//! Where a chain keeps a link: inline when it is small, boxed when it is not, with what
//! its trace says of it beside it.
//!
//! A step with an ordinary closure fits in a dozen words, so the chain's queue holds it
//! by value and adding a callback costs no allocation of its own; a step too large or
//! over-aligned for the slot falls back to a `Box`. The step's kind and site are plain
//! fields of the slot, so the driver reads them without a call through the link's vtable.

use std::ops::{Deref, DerefMut};
use std::panic::Location;

use super::events::StepKind;
use super::step::Link;

/// Words of the inline slot, one of which holds the vtable pointer: room for a step
/// with a `u64` result and a closure capturing several words. A link is moved into the
/// queue when added, so the slot is no larger than that.
const WORDS: usize = 9;

type Inline = stack_dst::Value<dyn Link, stack_dst::buffers::ConstArrayBuf<usize, WORDS>>;

/// One link of a chain, owned by the chain.
pub(crate) struct LinkSlot {
    /// Callback, errback or both, as the step's trace reports it; `None` for the links
    /// that are not traced (a fired result's holder, a child's forwarder).
    pub(crate) kind: Option<StepKind>,
    /// The line that added the link.
    pub(crate) site: &'static Location<'static>,
    link: Stored,
}

enum Stored {
    Inline(Inline),
    Boxed(Box<dyn Link>),
}

impl LinkSlot {
    /// Stores `link` inline if it fits, else on the heap.
    #[inline]
    pub(crate) fn new<L: Link + 'static>(
        link: L,
        kind: Option<StepKind>,
        site: &'static Location<'static>,
    ) -> Self {
        // Checked here, on constants, because the inline slot asserts its alignment at run time.
        let link = if align_of::<L>() <= align_of::<usize>()
            && size_of::<L>() < WORDS * size_of::<usize>()
        {
            match Inline::new_stable(link, |l| l as &dyn Link) {
                Ok(inline) => Stored::Inline(inline),
                Err(link) => Stored::Boxed(Box::new(link)),
            }
        } else {
            Stored::Boxed(Box::new(link))
        };
        Self { kind, site, link }
    }
}

impl Deref for LinkSlot {
    type Target = dyn Link;

    #[inline]
    fn deref(&self) -> &Self::Target {
        match &self.link {
            Stored::Inline(link) => &**link,
            Stored::Boxed(link) => &**link,
        }
    }
}

impl DerefMut for LinkSlot {
    #[inline]
    fn deref_mut(&mut self) -> &mut Self::Target {
        match &mut self.link {
            Stored::Inline(link) => &mut **link,
            Stored::Boxed(link) => &mut **link,
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
        let small = Holder::boxed(Ok(7_u64), site);
        assert!(matches!(small.link, Stored::Inline(_)));
        let large = Holder::boxed(Ok([0_u64; 32]), site);
        assert!(matches!(large.link, Stored::Boxed(_)));
        let mut small = small;
        let value = crate::defer::step::take_result::<u64>(&mut *small);
        assert_eq!(value.ok(), Some(7));
    }

    #[test]
    fn a_callback_capturing_three_words_is_stored_inline() {
        use crate::defer::Failure;
        use crate::defer::step::{OnValue, Step};
        let site = std::panic::Location::caller();
        let (a, b, c) = (1_u64, 2_u64, 3_u64);
        let callback = move |v: u64| Ok::<u64, Failure>(v + a + b + c);
        let step = Step::<u64, u64, _>::boxed(OnValue(callback), site);
        assert!(matches!(step.link, Stored::Inline(_)));
        assert_eq!(step.kind, Some(crate::defer::StepKind::Callback));
    }
}
