//! A command filter this module registers and removes while it runs (the fill leases' and
//! the client-database one), kept as the pointer Redis returned, null while none is.

use redis_module::raw;
use std::os::raw::c_int;
use std::ptr;
use std::sync::atomic::{AtomicPtr, Ordering};

pub(crate) struct FilterSlot(AtomicPtr<raw::RedisModuleCommandFilter>);

/// What Redis calls with each command.
pub(crate) type FilterFn = unsafe extern "C" fn(*mut raw::RedisModuleCommandFilterCtx);

impl FilterSlot {
    pub(crate) const fn new() -> Self {
        Self(AtomicPtr::new(ptr::null_mut()))
    }

    pub(crate) fn is_registered(&self) -> bool {
        !self.0.load(Ordering::Relaxed).is_null()
    }

    /// Registers `callback` (not called for this module's own `RedisModule_Call`s) unless a
    /// filter is registered here already; whether one is registered after.
    pub(crate) fn register(&self, ctx: *mut raw::RedisModuleCtx, callback: FilterFn) -> bool {
        if self.is_registered() {
            return true;
        }
        // SAFETY: ctx is a live context of this module (OnLoad's or a command's).
        let filter = unsafe {
            raw::RedisModule_RegisterCommandFilter.map_or(ptr::null_mut(), |register| {
                register(
                    ctx,
                    Some(callback),
                    raw::REDISMODULE_CMDFILTER_NOSELF as c_int,
                )
            })
        };
        self.0.store(filter, Ordering::Relaxed);
        !filter.is_null()
    }

    /// Removes the filter, if one is registered.
    pub(crate) fn unregister(&self, ctx: *mut raw::RedisModuleCtx) {
        let filter = self.0.swap(ptr::null_mut(), Ordering::Relaxed);
        if filter.is_null() {
            return;
        }
        // SAFETY: the filter was registered by this module; ctx is a live context of it.
        unsafe {
            if let Some(unregister) = raw::RedisModule_UnregisterCommandFilter {
                unregister(ctx, filter);
            }
        }
    }
}

/// The arguments of the command a filter is called with (argument 0 is its name).
pub(crate) struct FilterArgs {
    fctx: *mut raw::RedisModuleCommandFilterCtx,
    count: c_int,
}

impl FilterArgs {
    /// `None` where the server lacks the filter argument API.
    ///
    /// # Safety
    /// `fctx` is the context of the filter call running now, and the result is used only
    /// during that call.
    pub(crate) unsafe fn new(fctx: *mut raw::RedisModuleCommandFilterCtx) -> Option<Self> {
        let count = raw::RedisModule_CommandFilterArgsCount?(fctx);
        Some(Self { fctx, count })
    }

    pub(crate) fn len(&self) -> c_int {
        self.count
    }

    /// Argument `pos`, if there is one.
    pub(crate) fn get(&self, pos: c_int) -> Option<&[u8]> {
        if pos < 0 || pos >= self.count {
            return None;
        }
        // SAFETY: fctx is the live filter context (see `new`); pos is within its arguments.
        let arg = unsafe { raw::RedisModule_CommandFilterArgGet?(self.fctx, pos) };
        (!arg.is_null()).then(|| redis_module::RedisString::string_as_slice(arg))
    }
}
