//! The allocator setting `backend` makes by number is the one it means.
//! Its own test binary: nothing has tuned the allocator before it runs.

/// mimalloc 3 waits 1,000 ms before it hands freed memory back, and no
/// other option of it defaults to 1,000; `tune_allocator` makes it 0.
/// (Fails if the environment sets `MIMALLOC_PURGE_DELAY`.)
#[test]
fn the_option_tune_allocator_sets_is_mimallocs_purge_delay() {
    // SAFETY: reads a process-wide option; any option number is valid.
    let get = || unsafe { libmimalloc_sys::mi_option_get(backend::PURGE_DELAY) };
    assert_eq!(get(), 1_000, "mimalloc's default purge delay, in ms");
    backend::tune_allocator();
    assert_eq!(get(), 0);
}
