//! Our expansion of Slurm's compressed host lists against Slurm's own
//! (`scontrol show hostnames`), on the strings Slurm writes. Runs where `scontrol` is
//! installed (`scripts/test-slurm.sh` sets `COBRE_SLURM_HOSTLISTS=1` and fails without it).

use std::process::Command;

use cobre_comm::slurm::expand_hostlist;

const LISTS: [&str; 8] = [
    "vm",
    "node[01-04,07]",
    "n[8-11]",
    "cn[001-003],gpu[1-2]",
    "rack[1-2]-n[01-02]",
    "a,b[3-4],c",
    "login1,compute[0998-1002]",
    "x[7]",
];

#[test]
fn host_lists_expand_as_scontrol_does() {
    let required = std::env::var("COBRE_SLURM_HOSTLISTS").is_ok_and(|v| v == "1");
    for list in LISTS {
        let ours = expand_hostlist(list).unwrap();
        let theirs = match Command::new("scontrol")
            .args(["show", "hostnames", list])
            .output()
        {
            Ok(out) if out.status.success() => String::from_utf8(out.stdout).unwrap(),
            other => {
                assert!(!required, "scontrol is needed here: {other:?}");
                println!("scontrol is not installed: compared nothing");
                return;
            }
        };
        let theirs: Vec<&str> = theirs.lines().collect();
        assert_eq!(ours, theirs, "{list}");
    }
}
