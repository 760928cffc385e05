//! `cria-train launch --nproc N -- ARGS`: N local processes of this binary running ARGS with
//! torchrun's environment (RANK = LOCAL_RANK = i, WORLD_SIZE = N, MASTER_ADDR = 127.0.0.1,
//! MASTER_PORT), each line of their output prefixed with `[rank i]`. When a rank fails the
//! others are stopped (they would wait forever in a collective) and the launch fails naming it.

use cria_train::{Result, TrainError};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

fn launch_err(reason: impl Into<String>) -> TrainError {
    TrainError::Launch {
        reason: reason.into(),
    }
}

/// A port that was free a moment ago (bind port 0, read it back, release it).
fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| launch_err(format!("finding a free port: {e}")))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| launch_err(format!("finding a free port: {e}")))
}

fn forward(
    rank: usize,
    stream: impl std::io::Read + Send + 'static,
    to_stderr: bool,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            if to_stderr {
                eprintln!("[rank {rank}] {line}");
            } else {
                println!("[rank {rank}] {line}");
            }
        }
    })
}

pub fn launch(nproc: usize, master_port: Option<u16>, args: &[String]) -> Result<()> {
    if nproc == 0 {
        return Err(TrainError::config("nproc", 0, "must be at least 1"));
    }
    if args.first().is_some_and(|a| a == "launch") {
        return Err(TrainError::config(
            "launch",
            "launch",
            "the command after -- must not be another launch",
        ));
    }
    let port = match master_port {
        Some(p) => p,
        None => free_port()?,
    };
    let exe = std::env::current_exe()
        .map_err(|e| launch_err(format!("locating this executable: {e}")))?;
    let mut children: Vec<Option<Child>> = Vec::with_capacity(nproc);
    let mut pumps = Vec::new();
    for rank in 0..nproc {
        let spawned = Command::new(&exe)
            .args(args)
            .env("RANK", rank.to_string())
            .env("LOCAL_RANK", rank.to_string())
            .env("WORLD_SIZE", nproc.to_string())
            .env("LOCAL_WORLD_SIZE", nproc.to_string())
            .env("MASTER_ADDR", "127.0.0.1")
            .env("MASTER_PORT", port.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn();
        let mut child = match spawned {
            Ok(c) => c,
            Err(e) => {
                stop_all(&mut children);
                return Err(launch_err(format!(
                    "starting rank {rank} ({}): {e}",
                    exe.display()
                )));
            }
        };
        if let Some(out) = child.stdout.take() {
            pumps.push(forward(rank, out, false));
        }
        if let Some(err) = child.stderr.take() {
            pumps.push(forward(rank, err, true));
        }
        children.push(Some(child));
    }
    let mut statuses: Vec<Option<ExitStatus>> = vec![None; nproc];
    let mut first_failure: Option<(usize, ExitStatus)> = None;
    while statuses.iter().any(Option::is_none) {
        for rank in 0..nproc {
            if statuses[rank].is_some() {
                continue;
            }
            let Some(child) = children[rank].as_mut() else {
                continue;
            };
            match child.try_wait() {
                Ok(Some(st)) => {
                    statuses[rank] = Some(st);
                    if !st.success() && first_failure.is_none() {
                        first_failure = Some((rank, st));
                        stop_all(&mut children);
                    }
                }
                Ok(None) => {}
                Err(e) => return Err(launch_err(format!("waiting for rank {rank}: {e}"))),
            }
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    for p in pumps {
        let _ = p.join();
    }
    match first_failure {
        None => Ok(()),
        Some((rank, st)) => {
            let stopped: Vec<usize> = (0..nproc)
                .filter(|&r| r != rank && statuses[r].is_some_and(|s| !s.success()))
                .collect();
            Err(launch_err(format!(
                "rank {rank} failed ({st}); {} of {nproc} ranks did not finish cleanly {stopped:?} (stopped after the first failure)",
                stopped.len() + 1
            )))
        }
    }
}

/// Kill every still-running child this launcher started (each by its own handle).
fn stop_all(children: &mut [Option<Child>]) {
    for c in children.iter_mut().flatten() {
        if let Ok(None) = c.try_wait() {
            let _ = c.kill();
        }
    }
}
