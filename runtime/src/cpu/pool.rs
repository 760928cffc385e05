//! A persistent pool of worker threads for the CPU kernels: started once, woken per operation.
//! A decode step runs a few hundred short operations, so a thread spawn (or a sleeping
//! thread's wake-up through the OS) per operation would cost more than the work; the workers
//! spin briefly on an atomic generation counter between operations and park only when idle.
//! The calling thread takes tasks too. Without threads (wasm32 without shared memory, or one
//! core) everything runs inline on the caller.

use std::cell::UnsafeCell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};

/// The job of one operation: a task body and how many tasks. The body's lifetime is erased:
/// [`Pool::run`] does not return before every worker is done with it.
#[derive(Clone, Copy)]
struct Job {
    body: *const (dyn Fn(usize) + Sync),
    tasks: usize,
}

struct Shared {
    generation: AtomicU64,
    job: UnsafeCell<Job>,
    next: AtomicUsize,
    /// Workers not yet done with the current generation.
    active: AtomicUsize,
    panicked: AtomicBool,
    shutdown: AtomicBool,
    lock: Mutex<()>,
    wake: Condvar,
}

// The job cell is written only by the caller while no worker reads it (between generations,
// under `running`), and read by workers only after they see the new generation (Acquire).
unsafe impl Sync for Shared {}
unsafe impl Send for Shared {}

fn noop(_: usize) {}

pub struct Pool {
    shared: Arc<Shared>,
    workers: Vec<std::thread::JoinHandle<()>>,
    /// One operation at a time.
    running: Mutex<()>,
}

/// Spins of a waiting worker before it parks (a few hundred microseconds).
const SPINS: u32 = 1 << 14;

impl Pool {
    /// A pool of `threads` threads in all: the caller and `threads - 1` workers.
    pub fn new(threads: usize) -> Pool {
        let shared = Arc::new(Shared {
            generation: AtomicU64::new(0),
            job: UnsafeCell::new(Job { body: &noop as &(dyn Fn(usize) + Sync), tasks: 0 }),
            next: AtomicUsize::new(0),
            active: AtomicUsize::new(0),
            panicked: AtomicBool::new(false),
            shutdown: AtomicBool::new(false),
            lock: Mutex::new(()),
            wake: Condvar::new(),
        });
        let workers = (1..threads.max(1))
            .filter_map(|i| {
                let s = shared.clone();
                // A pool that cannot start a thread runs with fewer: the caller does the rest.
                std::thread::Builder::new().name(format!("cria-cpu-{i}")).spawn(move || worker(&s)).ok()
            })
            .collect();
        Pool { shared, workers, running: Mutex::new(()) }
    }

    /// A pool with one thread per available core (inline where threads are unavailable).
    pub fn with_available_parallelism() -> Pool {
        #[cfg(target_arch = "wasm32")]
        let threads = 1;
        #[cfg(not(target_arch = "wasm32"))]
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        Pool::new(threads)
    }

    /// Threads that take tasks, the caller included.
    pub fn threads(&self) -> usize {
        self.workers.len() + 1
    }

    /// Runs `body(i)` for every i in 0..tasks, spread over the pool, and returns when all are
    /// done. A panicking task panics here, after the others finish.
    pub fn run(&self, tasks: usize, body: &(dyn Fn(usize) + Sync)) {
        if tasks == 0 {
            return;
        }
        if self.workers.is_empty() || tasks == 1 {
            (0..tasks).for_each(body);
            return;
        }
        let _one = self.running.lock().unwrap_or_else(|e| e.into_inner());
        let s = &*self.shared;
        // SAFETY: no worker reads the job between generations (all finished the previous one:
        // `active` was 0 when the last run returned); the erased lifetime ends before we return.
        unsafe {
            *s.job.get() = Job { body: std::mem::transmute::<&(dyn Fn(usize) + Sync), &'static (dyn Fn(usize) + Sync)>(body), tasks };
        }
        s.next.store(0, Ordering::Relaxed);
        s.active.store(self.workers.len(), Ordering::Relaxed);
        s.generation.fetch_add(1, Ordering::Release);
        {
            let _g = s.lock.lock().unwrap_or_else(|e| e.into_inner());
            s.wake.notify_all();
        }
        take_tasks(s, body, tasks);
        let mut spins = 0u32;
        while s.active.load(Ordering::Acquire) != 0 {
            spins += 1;
            if spins < SPINS {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
        if s.panicked.swap(false, Ordering::AcqRel) {
            panic!("a CPU kernel task panicked");
        }
    }
}

fn take_tasks(s: &Shared, body: &(dyn Fn(usize) + Sync), tasks: usize) {
    loop {
        let i = s.next.fetch_add(1, Ordering::Relaxed);
        if i >= tasks {
            return;
        }
        if catch_unwind(AssertUnwindSafe(|| body(i))).is_err() {
            s.panicked.store(true, Ordering::Release);
        }
    }
}

fn worker(s: &Shared) {
    let mut seen = 0u64;
    loop {
        let mut spins = 0u32;
        loop {
            if s.shutdown.load(Ordering::Acquire) {
                return;
            }
            let g = s.generation.load(Ordering::Acquire);
            if g != seen {
                seen = g;
                break;
            }
            spins += 1;
            if spins < SPINS {
                std::hint::spin_loop();
            } else {
                let guard = s.lock.lock().unwrap_or_else(|e| e.into_inner());
                if s.generation.load(Ordering::Acquire) == seen && !s.shutdown.load(Ordering::Acquire) {
                    // Woken by the next run (or, at worst, re-checking every 10 ms).
                    let _ = s.wake.wait_timeout(guard, std::time::Duration::from_millis(10));
                }
                spins = 0;
            }
        }
        // SAFETY: written before the generation we just saw (Release/Acquire), alive until
        // `active` reaches 0.
        let job = unsafe { *s.job.get() };
        take_tasks(s, unsafe { &*job.body }, job.tasks);
        s.active.fetch_sub(1, Ordering::Release);
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.shared.shutdown.store(true, Ordering::Release);
        {
            let _g = self.shared.lock.lock().unwrap_or_else(|e| e.into_inner());
            self.shared.wake.notify_all();
        }
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;

    #[test]
    fn every_task_runs_once_over_many_operations() {
        let pool = Pool::new(4);
        for tasks in [1usize, 2, 3, 7, 64, 1000] {
            for _ in 0..50 {
                let hits: Vec<AtomicUsize> = (0..tasks).map(|_| AtomicUsize::new(0)).collect();
                pool.run(tasks, &|i| {
                    hits[i].fetch_add(1, Ordering::Relaxed);
                });
                assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == 1), "{tasks} tasks");
            }
        }
    }

    #[test]
    fn a_panicking_task_panics_the_caller_and_the_pool_still_works() {
        let pool = Pool::new(3);
        let r = catch_unwind(AssertUnwindSafe(|| pool.run(10, &|i| assert!(i != 5, "task 5"))));
        assert!(r.is_err());
        let n = AtomicUsize::new(0);
        pool.run(10, &|_| {
            n.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(n.load(Ordering::Relaxed), 10);
    }

    #[test]
    fn an_idle_pool_wakes_for_the_next_operation() {
        let pool = Pool::new(2);
        std::thread::sleep(std::time::Duration::from_millis(50)); // workers parked
        let n = AtomicUsize::new(0);
        pool.run(100, &|_| {
            n.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(n.load(Ordering::Relaxed), 100);
    }
}
