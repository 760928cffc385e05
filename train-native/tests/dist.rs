//! Data-parallel start-up with real processes on loopback, no GPU: the rendezvous hands rank
//! 0's 128-byte id to every rank (`cria-train rendezvous-check`), a rank that never arrives is
//! named in rank 0's timeout error, and the launcher runs N ranks and fails when one fails.
//! Also: `train --device cuda` on a machine without CUDA fails with the typed library error.

use std::process::{Command, Output};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_cria-train");

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn rank_cmd(rank: usize, world: usize, port: u16, timeout_s: &str) -> Command {
    let mut c = Command::new(BIN);
    c.arg("rendezvous-check")
        .env("RANK", rank.to_string())
        .env("LOCAL_RANK", rank.to_string())
        .env("WORLD_SIZE", world.to_string())
        .env("MASTER_ADDR", "127.0.0.1")
        .env("MASTER_PORT", port.to_string())
        .env("CRIA_RENDEZVOUS_TIMEOUT_S", timeout_s);
    c
}

fn id_of(out: &Output) -> String {
    let s = String::from_utf8_lossy(&out.stdout);
    s.split("id ")
        .nth(1)
        .map(|x| x.trim().to_string())
        .unwrap_or_default()
}

#[test]
fn three_processes_receive_identical_ids() {
    let port = free_port();
    // Start the non-zero ranks first: they must wait for rank 0 to come up.
    let children: Vec<_> = [2usize, 1, 0]
        .iter()
        .map(|&r| (r, rank_cmd(r, 3, port, "30").output_async()))
        .collect();
    let outs: Vec<(usize, Output)> = children
        .into_iter()
        .map(|(r, c)| (r, c.join().unwrap()))
        .collect();
    let mut ids = Vec::new();
    for (r, o) in &outs {
        println!(
            "rank {r}: {} {}",
            String::from_utf8_lossy(&o.stdout).trim(),
            String::from_utf8_lossy(&o.stderr).trim()
        );
        assert!(
            o.status.success(),
            "rank {r} failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        ids.push(id_of(o));
    }
    assert_eq!(ids[0].len(), 256, "128 bytes as hex");
    assert!(
        ids.iter().all(|i| i == &ids[0]),
        "all ranks hold the same id: {ids:?}"
    );
    assert_ne!(ids[0], "0".repeat(256));
}

#[test]
fn a_missing_rank_is_named_within_the_timeout() {
    let port = free_port();
    let start = Instant::now();
    let r1 = rank_cmd(1, 3, port, "3").output_async();
    let r0 = rank_cmd(0, 3, port, "3").output().unwrap();
    let r1 = r1.join().unwrap();
    let took = start.elapsed();
    let e0 = String::from_utf8_lossy(&r0.stderr).to_string();
    let e1 = String::from_utf8_lossy(&r1.stderr).to_string();
    println!("rank 0: {e0}\nrank 1: {e1}\ntook {took:?}");
    assert!(!r0.status.success() && !r1.status.success());
    assert!(
        e0.contains("rank(s) [2] of world size 3 never connected"),
        "rank 0 names rank 2: {e0}"
    );
    assert!(
        e1.contains("waiting for the id from rank 0"),
        "rank 1 says what it waited for: {e1}"
    );
    assert!(
        took < Duration::from_secs(15),
        "gave up near the 3 s deadline, took {took:?}"
    );
}

#[test]
fn bad_environment_is_a_clear_error() {
    let out = rank_cmd(3, 2, 29500, "5").output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("RANK") && err.contains("must be < WORLD_SIZE 2"),
        "{err}"
    );
}

#[test]
fn launcher_runs_every_rank_and_prefixes_output() {
    let out = Command::new(BIN)
        .args(["launch", "--nproc", "3", "--", "rendezvous-check"])
        .env("CRIA_RENDEZVOUS_TIMEOUT_S", "30")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success());
    let ids: Vec<&str> = (0..3)
        .map(|r| {
            let line = stdout
                .lines()
                .find(|l| l.starts_with(&format!("[rank {r}] rank {r} of 3: id ")))
                .unwrap_or_else(|| panic!("no line from rank {r}"));
            line.rsplit(' ').next().unwrap()
        })
        .collect();
    assert!(
        ids.iter().all(|i| *i == ids[0] && i.len() == 256),
        "{ids:?}"
    );
}

#[test]
fn launcher_fails_when_a_rank_fails() {
    let out = Command::new(BIN)
        .args([
            "launch",
            "--nproc",
            "2",
            "--",
            "train",
            "--data",
            "/nonexistent/cria-data",
            "--out",
            "/tmp/unused",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    println!("{err}");
    assert!(!out.status.success());
    assert!(
        err.contains("[rank 0] error:") || err.contains("[rank 1] error:"),
        "rank output is prefixed: {err}"
    );
    assert!(
        err.contains("launch: rank") && err.contains("failed"),
        "the launch names the failed rank: {err}"
    );
}

#[test]
fn cuda_training_without_a_driver_is_a_typed_error() {
    if cria_train::cuda::libs::Library::Driver.present() {
        eprintln!(
            "SKIPPED cuda_training_without_a_driver_is_a_typed_error: this machine has a CUDA driver"
        );
        return;
    }
    let out = Command::new(BIN)
        .args([
            "train",
            "--device",
            "cuda",
            "--synthetic-vocab",
            "300",
            "--steps",
            "1",
            "--out",
        ])
        .arg(std::env::temp_dir().join("cria-no-cuda"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    println!("{err}");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        err.contains("CUDA library libcuda (CUDA driver) could not be loaded")
            && err.contains("hint:"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

/// `Command::output` on a thread, so several ranks run at once.
trait OutputAsync {
    fn output_async(self) -> std::thread::JoinHandle<Output>;
}

impl OutputAsync for Command {
    fn output_async(mut self) -> std::thread::JoinHandle<Output> {
        std::thread::spawn(move || self.output().unwrap())
    }
}
