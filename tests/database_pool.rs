//! The connection pool under churn: its idle count never wraps below zero. sqlx 0.9.0
//! counted a returned connection only after another task could already take it; the
//! count then read `usize::MAX` for a moment, and a pool maintenance sweep that read it
//! spun a core for good (sqlx issue #3645; seen here as a hung test in CI sim). Our
//! vendored sqlx-core carries the fix (vendor/sqlx-core/AIOPS_PATCH.md).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use common::{Backend, TestDb};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_idle_count_never_wraps_under_churn() {
    let Some(db) = TestDb::create(Backend::Postgres).await else {
        return;
    };
    const MAX: u32 = 4;
    let pool = sea_orm::sqlx::postgres::PgPoolOptions::new()
        .max_connections(MAX)
        .connect(&db.url)
        .await
        .expect("pool");
    let stop = Arc::new(AtomicBool::new(false));
    let most = Arc::new(AtomicUsize::new(0));
    // Watches the count from a thread of its own, as often as it can.
    let watcher = {
        let (pool, stop, most) = (pool.clone(), stop.clone(), most.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                most.fetch_max(pool.num_idle(), Ordering::Relaxed);
            }
        })
    };
    let mut churn = Vec::new();
    for _ in 0..16 {
        let pool = pool.clone();
        churn.push(tokio::spawn(async move {
            let until = tokio::time::Instant::now() + Duration::from_secs(3);
            let mut n = 0u64;
            while tokio::time::Instant::now() < until {
                let conn = pool.acquire().await.expect("acquire");
                drop(conn);
                n += 1;
                tokio::task::yield_now().await;
            }
            n
        }));
    }
    let mut cycles = 0;
    for task in churn {
        cycles += task.await.expect("churn task");
    }
    stop.store(true, Ordering::Relaxed);
    watcher.join().expect("watcher");
    let most = most.load(Ordering::Relaxed);
    assert!(
        most <= MAX as usize,
        "the pool counted {most} idle connections of at most {MAX} ({cycles} acquire/release cycles)"
    );
    pool.close().await;
}
