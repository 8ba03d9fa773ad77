//! Web Locks through `background_assets::web::locks` (shared by the sw and page suites).

use std::future::Future;

use background_assets::core::error::Error;
use background_assets::web::locks::{acquire, query, LockMode, LockOptions};
use futures::future::{select, Either};
use wasm_bindgen_test::wasm_bindgen_test;

fn unique(label: &str) -> String {
    format!(
        "test-lock-{label}-{}",
        (js_sys::Math::random() * 1e12) as u64
    )
}

/// `Some(output)` if `future` finishes within `ms`, else `None`.
async fn within<F: Future>(ms: u32, future: F) -> Option<F::Output> {
    let future = std::pin::pin!(future);
    match select(future, gloo_timers::future::TimeoutFuture::new(ms)).await {
        Either::Left((output, _)) => Some(output),
        Either::Right(_) => None,
    }
}

#[wasm_bindgen_test]
async fn exclusive_lock_excludes_if_available_requests() {
    let name = unique("exclusive");
    let guard = acquire(&name, LockOptions::exclusive())
        .await
        .unwrap()
        .expect("a free lock is granted");
    assert_eq!(guard.name(), name);
    assert_eq!(guard.mode(), LockMode::Exclusive);
    assert!(acquire(&name, LockOptions::exclusive().if_available())
        .await
        .unwrap()
        .is_none());
    assert!(acquire(&name, LockOptions::shared().if_available())
        .await
        .unwrap()
        .is_none());
    assert!(query().await.unwrap().is_held(&name));
    guard.release().await;
    let again = acquire(&name, LockOptions::exclusive().if_available())
        .await
        .unwrap();
    assert!(again.is_some(), "dropping the guard released the lock");
}

#[wasm_bindgen_test]
async fn shared_locks_coexist_and_exclude_exclusive() {
    let name = unique("shared");
    let first = acquire(&name, LockOptions::shared())
        .await
        .unwrap()
        .unwrap();
    let second = acquire(&name, LockOptions::shared().if_available())
        .await
        .unwrap()
        .expect("a second shared holder is granted");
    assert_eq!(second.mode(), LockMode::Shared);
    let snapshot = query().await.unwrap();
    let holders: Vec<_> = snapshot.held.iter().filter(|e| e.name == name).collect();
    assert_eq!(holders.len(), 2, "{snapshot:?}");
    assert!(holders.iter().all(|e| e.mode == LockMode::Shared));
    assert!(acquire(&name, LockOptions::exclusive().if_available())
        .await
        .unwrap()
        .is_none());
    drop(first);
    drop(second);
}

#[wasm_bindgen_test]
async fn steal_makes_the_old_guard_lost() {
    let name = unique("steal");
    let old = acquire(&name, LockOptions::exclusive())
        .await
        .unwrap()
        .unwrap();
    assert!(!old.is_lost());
    let new = acquire(&name, LockOptions::exclusive().steal())
        .await
        .unwrap()
        .expect("steal is always granted");
    assert!(
        within(5_000, old.lost()).await.is_some(),
        "the old guard learns it lost the lock"
    );
    assert!(old.is_lost());
    assert!(!new.is_lost());
    // Dropping the stale guard must not release the thief's lock.
    drop(old);
    assert!(acquire(&name, LockOptions::exclusive().if_available())
        .await
        .unwrap()
        .is_none());
    new.release().await;
    assert!(acquire(&name, LockOptions::exclusive().if_available())
        .await
        .unwrap()
        .is_some());
}

#[wasm_bindgen_test]
async fn waiting_past_the_deadline_is_a_lock_timeout() {
    let name = unique("timeout");
    let holder = acquire(&name, LockOptions::exclusive())
        .await
        .unwrap()
        .unwrap();
    let error = acquire(&name, LockOptions::exclusive().timeout_ms(150))
        .await
        .expect_err("held elsewhere past the deadline");
    assert_eq!(
        error,
        Error::LockTimeout {
            name: name.clone(),
            timeout_ms: 150
        }
    );
    assert!(error.to_string().contains(&name));
    // The abandoned request is no longer waiting.
    assert!(!query().await.unwrap().is_pending(&name));
    holder.release().await;
    // A deadline that is met gives the lock.
    let granted = acquire(&name, LockOptions::exclusive().timeout_ms(2_000))
        .await
        .unwrap();
    assert!(granted.is_some());
}

#[wasm_bindgen_test]
async fn dropping_the_guard_lets_a_waiter_in() {
    let name = unique("drop");
    let holder = acquire(&name, LockOptions::exclusive())
        .await
        .unwrap()
        .unwrap();
    let waiter = acquire(&name, LockOptions::exclusive());
    let mut waiter = Box::pin(waiter);
    assert!(
        within(100, waiter.as_mut()).await.is_none(),
        "the waiter waits while the lock is held"
    );
    assert!(query().await.unwrap().is_pending(&name));
    drop(holder);
    let granted = within(5_000, waiter)
        .await
        .expect("granted after the drop")
        .unwrap();
    assert!(granted.is_some());
}

#[wasm_bindgen_test]
async fn steal_with_if_available_is_refused() {
    let error = acquire(
        &unique("bad"),
        LockOptions::exclusive().steal().if_available(),
    )
    .await
    .expect_err("invalid combination");
    assert_eq!(error.name(), "Unsupported");
}

#[wasm_bindgen_test]
async fn a_grant_nobody_receives_is_released() {
    let name = unique("abandoned");
    let mut request = Box::pin(acquire(&name, LockOptions::exclusive()));
    // Issue the request, then let the grant arrive while nobody polls it.
    assert!(futures::poll!(request.as_mut()).is_pending());
    gloo_timers::future::TimeoutFuture::new(50).await;
    assert!(query().await.unwrap().is_held(&name), "granted meanwhile");
    drop(request);
    let mut released = false;
    for _ in 0..40 {
        if !query().await.unwrap().is_held(&name) {
            released = true;
            break;
        }
        gloo_timers::future::TimeoutFuture::new(25).await;
    }
    assert!(released, "the abandoned grant was let go");
}
