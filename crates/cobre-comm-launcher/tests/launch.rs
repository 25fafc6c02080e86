//! The launcher on real processes (`sh` scripts as ranks).

use std::time::Duration;

use cobre_comm_launcher::{Failure, Launcher, Outcome, shm_env, tcp_env};

fn sh(script: &str) -> Launcher {
    Launcher::new("sh").args(["-c", script])
}

#[test]
fn every_rank_runs_with_its_own_environment() {
    let report = sh("echo hello $COBRE_SHM_RANK of $COBRE_SHM_SIZE")
        .ranks(3)
        .rank_env(shm_env(3, None))
        .capture_stdout(true)
        .timeout(Duration::from_secs(30))
        .run()
        .unwrap();
    assert!(report.success(), "{:?}", report.failure);
    assert_eq!(report.exit_code(), 0);
    for (rank, r) in report.ranks.iter().enumerate() {
        assert_eq!(r.stdout, format!("hello {rank} of 3\n"));
        assert_eq!(r.outcome, Outcome::Exited(0));
    }
}

#[test]
fn a_failing_rank_stops_the_others_and_is_named() {
    // The long sleep is the work the other ranks are doing when rank 1 fails.
    let report = sh(r#"if [ "$COBRE_SHM_RANK" = 1 ]; then exit 3; fi; sleep 60"#)
        .ranks(3)
        .rank_env(shm_env(3, None))
        .timeout(Duration::from_secs(50))
        .run()
        .unwrap();
    assert_eq!(
        report.failure,
        Some(Failure::Rank {
            rank: 1,
            outcome: Outcome::Exited(3)
        })
    );
    assert_eq!(report.exit_code(), 3);
    assert!(
        report.elapsed < Duration::from_secs(20),
        "took {:?}",
        report.elapsed
    );
    assert_eq!(report.ranks[0].outcome, Outcome::Stopped);
    assert_eq!(report.ranks[2].outcome, Outcome::Stopped);
    let text = report.failure.unwrap().to_string();
    assert_eq!(text, "rank 1 exited with code 3; stopped the other ranks");
}

#[test]
fn a_rank_killed_by_a_signal_is_reported_with_the_signal() {
    let report = sh(r#"if [ "$COBRE_SHM_RANK" = 0 ]; then kill -9 $$; fi; sleep 60"#)
        .ranks(2)
        .rank_env(shm_env(2, None))
        .timeout(Duration::from_secs(50))
        .run()
        .unwrap();
    assert_eq!(
        report.failure,
        Some(Failure::Rank {
            rank: 0,
            outcome: Outcome::Signaled(9)
        })
    );
    assert_eq!(report.exit_code(), 137);
    assert!(report.failure.unwrap().to_string().contains("SIGKILL"));
}

#[test]
fn the_timeout_stops_every_rank() {
    let report = sh("sleep 60")
        .ranks(2)
        .timeout(Duration::from_millis(300))
        .run()
        .unwrap();
    assert_eq!(
        report.failure,
        Some(Failure::Timeout(Duration::from_millis(300)))
    );
    assert_eq!(report.exit_code(), 124);
    assert!(report.ranks.iter().all(|r| r.outcome == Outcome::Stopped));
    assert!(
        report.elapsed < Duration::from_secs(10),
        "took {:?}",
        report.elapsed
    );
}

#[test]
fn a_missing_program_is_an_error_naming_it() {
    let err = Launcher::new("no-such-program-cobre")
        .ranks(2)
        .run()
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("cannot start rank 0 (no-such-program-cobre)"),
        "{err}"
    );
}

#[test]
fn tcp_environments_differ_between_jobs() {
    let a = tcp_env(2, Some(Duration::from_secs(5))).unwrap();
    let b = tcp_env(2, None).unwrap();
    let get = |env: &[(String, String)], key: &str| {
        env.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
    };
    assert_ne!(get(&a[0], "COBRE_TCP_PORT"), get(&b[0], "COBRE_TCP_PORT"));
    assert_ne!(get(&a[0], "COBRE_TCP_TOKEN"), get(&b[0], "COBRE_TCP_TOKEN"));
    assert_eq!(get(&a[0], "COBRE_TCP_TOKEN"), get(&a[1], "COBRE_TCP_TOKEN"));
    assert_eq!(get(&a[1], "COBRE_TCP_RANK").as_deref(), Some("1"));
    assert_eq!(get(&a[1], "COBRE_TCP_TIMEOUT_SECS").as_deref(), Some("5"));
    assert_eq!(get(&b[1], "COBRE_TCP_TIMEOUT_SECS"), None);
}

#[test]
fn a_running_job_is_driven_rank_by_rank() {
    use std::time::Instant;

    use cobre_comm_launcher::Signal;

    // Rank 0 waits for a line on its input; rank 1 is started later and then killed.
    let mut job = sh(r#"echo "up $R"; read word; echo "got $word"; sleep 60"#)
        .ranks(2)
        .rank_env(vec![
            vec![("R".into(), "0".into())],
            vec![("R".into(), "1".into())],
        ])
        .piped_stdin(true)
        .capture_stdout(true)
        .capture_stderr(true)
        .stop_on_failure(false)
        .prepare()
        .unwrap();
    job.start_rank(0).unwrap();
    assert_eq!(job.pid(1), None);
    let deadline = Instant::now() + Duration::from_secs(30);
    assert_eq!(job.read_until(0, "up", deadline).as_deref(), Some("up 0"));
    // Nothing more comes before the line is sent: the wait ends at its deadline.
    let waited = Instant::now();
    assert_eq!(
        job.read_until(0, "got", Instant::now() + Duration::from_millis(200)),
        None
    );
    assert!(waited.elapsed() < Duration::from_secs(5));
    job.send_line(0, "go").unwrap();
    assert_eq!(
        job.read_until(0, "got", deadline).as_deref(),
        Some("got go")
    );
    job.start_rank(1).unwrap();
    assert!(job.read_until(1, "up 1", deadline).is_some());
    let killed = Instant::now();
    job.kill(1, Signal::KILL).unwrap();
    assert_eq!(job.wait_rank(1, deadline), Some(Outcome::Signaled(9)));
    assert_eq!(job.wait_rank(0, Instant::now()), None);
    let report = job.finish(Duration::from_millis(100));
    assert_eq!(
        report.failure,
        Some(Failure::Timeout(Duration::from_millis(100)))
    );
    assert_eq!(report.ranks[0].outcome, Outcome::Stopped);
    assert_eq!(report.ranks[0].stdout, "up 0\ngot go\n");
    assert_eq!(report.ranks[1].outcome, Outcome::Signaled(9));
    assert!(report.ranks[1].ended_at.unwrap() >= killed);
}

#[test]
fn finishing_closes_the_input_so_a_rank_reading_it_to_the_end_exits() {
    // `cat` copies its input until the pipe closes: it ends only if `finish` closes it.
    let mut job = Launcher::new("cat")
        .ranks(2)
        .piped_stdin(true)
        .capture_stdout(true)
        .spawn()
        .unwrap();
    job.send_line(0, "to rank 0").unwrap();
    job.send_line(1, "to rank 1").unwrap();
    let report = job.finish(Duration::from_secs(30));
    assert_eq!(report.failure, None);
    for (rank, r) in report.ranks.iter().enumerate() {
        assert_eq!(r.outcome, Outcome::Exited(0));
        assert_eq!(r.stdout, format!("to rank {rank}\n"));
    }
}
