//! Member replace under load: `etcdctl member remove` of a member (the leader or another), its data
//! dir wiped, `etcdctl member add` of it again with the same name and peer URL, and a start on a fresh
//! data dir with `--initial-cluster-state existing`; it catches up from the leader (a snapshot when the
//! leader's log was compacted past what it needs, else the log).

use std::time::Duration;

use crate::cluster::ERR_UNHEALTHY_CLUSTER;
use crate::netns::NsCluster;
use crate::Value;

/// Errors worth retrying a membership change on while the cluster gets over a removal or a fault.
const RETRY_ON: [&str; 6] =
    [ERR_UNHEALTHY_CLUSTER, "leader changed", "no leader", "timed out", "deadline exceeded", "too many requests"];
const CHANGE_TIMEOUT: Duration = Duration::from_secs(30);

/// Replaces member `i` (see the module docs), through member `via`; the new process is launched but
/// not waited for. Returns what happened to the old process.
pub fn replace(c: &mut NsCluster, i: usize, via: usize) -> Result<String, String> {
    let (old_id, name, peer) = (c.members[i].id_hex(), c.members[i].name.clone(), c.members[i].peer_url());
    let out = c.members[via].ctl_retry(&["member", "remove", &old_id], &RETRY_ON, CHANGE_TIMEOUT);
    // A retried remove that had gone through the first time: the member is not found the second time.
    if !out.success() && !out.stderr.contains("member not found") {
        return Err(format!("member remove {old_id} ({name}) via {}: {out:?}", c.members[via].name));
    }
    // A removed etcd member stops by itself once it applies its removal.
    let m = &mut c.members[i];
    let exit = match m.wait_exit(Duration::from_secs(5)) {
        Some(status) => format!("exited by itself ({status})"),
        None => {
            m.kill9();
            "killed (still running 5 s after its removal)".to_string()
        }
    };
    let dir = m.data_dir();
    super::disk::wipe(&dir).map_err(|e| format!("cannot wipe {}: {e}", dir.display()))?;
    let peer_flag = format!("--peer-urls={peer}");
    let out = c.members[via].ctl_retry(&["member", "add", &name, &peer_flag], &RETRY_ON, CHANGE_TIMEOUT);
    if !out.success() && !out.stderr.contains("already exists") {
        return Err(format!("member add {name} via {}: {out:?}", c.members[via].name));
    }
    // The initial cluster from the member list (an unstarted member has no name yet: it is this one).
    let out = c.members[via].etcdctl(&["-w", "json", "member", "list"]);
    let list: Value = serde_json::from_str(out.stdout.trim()).map_err(|e| format!("member list: {e}: {out:?}"))?;
    let mut initial = Vec::new();
    let mut new_id = None;
    for m in list["members"].as_array().into_iter().flatten() {
        let urls: Vec<&str> = m["peerURLs"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
        let mname = m["name"].as_str().filter(|s| !s.is_empty()).unwrap_or(&name);
        if urls.contains(&peer.as_str()) {
            new_id = m["ID"].as_u64();
        }
        initial.extend(urls.iter().map(|u| format!("{mname}={u}")));
    }
    let new_id = new_id.ok_or_else(|| format!("{name} ({peer}) not in the member list after member add: {list}"))?;
    let m = &mut c.members[i];
    m.id = new_id;
    set_flag(&mut m.args, "--initial-cluster", &initial.join(","));
    set_flag(&mut m.args, "--initial-cluster-state", "existing");
    m.launch().map_err(|e| format!("cannot start {name} again: {e}"))?;
    Ok(exit)
}

/// Sets the value following `flag` in `args`.
pub fn set_flag(args: &mut [String], flag: &str, value: &str) {
    let k = args.iter().position(|a| a == flag).unwrap_or_else(|| panic!("no {flag} in {args:?}"));
    args[k + 1] = value.to_string();
}

/// Did member `m`'s current process catch up from a snapshot (as its log says since its last start)?
/// etcd 3.4: `finished applying incoming snapshot` (capnslog) or `applied snapshot` (zap); modkv:
/// `applied incoming snapshot`.
pub fn from_snapshot(m: &crate::process::Member) -> bool {
    let log = m.log();
    let since = log.rfind("=== harness: start #").map_or(&log[..], |k| &log[k..]);
    ["applied incoming snapshot", "finished applying incoming snapshot", "applied snapshot"]
        .iter()
        .any(|s| since.contains(s))
}
