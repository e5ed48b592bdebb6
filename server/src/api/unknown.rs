//! What a gRPC call of a method or service this member does not serve gets: grpc-go's words, as etcd
//! answers them (`unknown method Downgrade for service etcdserverpb.Maintenance`, `unknown service
//! foo.Bar`), where tonic's generated servers would answer `Unimplemented` with no message.

use std::collections::HashSet;
use std::sync::OnceLock;

use prost::Message as _;
use tonic::Status;

/// The gRPC services modkv serves (client and peer port).
const SERVED: &[&str] = &[
    "etcdserverpb.KV",
    "etcdserverpb.Watch",
    "etcdserverpb.Lease",
    "etcdserverpb.Cluster",
    "etcdserverpb.Maintenance",
    "etcdserverpb.Auth",
    "v3lockpb.Lock",
    "v3electionpb.Election",
    "modkvpb.Peer",
    "grpc.health.v1.Health",
];

/// `/package.Service/Method` of every method of the served services, from the protos.
fn methods() -> &'static HashSet<String> {
    static METHODS: OnceLock<HashSet<String>> = OnceLock::new();
    METHODS.get_or_init(|| {
        let ours = prost_types::FileDescriptorSet::decode(crate::proto::FILE_DESCRIPTOR_SET).unwrap_or_default();
        let health = prost_types::FileDescriptorSet::decode(tonic_health::pb::FILE_DESCRIPTOR_SET).unwrap_or_default();
        let mut out = HashSet::new();
        for file in ours.file.iter().chain(&health.file) {
            for svc in &file.service {
                let name = format!("{}.{}", file.package(), svc.name());
                for m in &svc.method {
                    out.insert(format!("/{name}/{}", m.name()));
                }
            }
        }
        out
    })
}

/// The answer to a call of `path` (`/package.Service/Method`) that no service here serves; `None` for a
/// served method (or a path too malformed to name one, which the services answer).
pub fn unimplemented(path: &str) -> Option<Status> {
    let (svc, method) = path.strip_prefix('/')?.split_once('/')?;
    if !SERVED.contains(&svc) {
        return Some(Status::unimplemented(format!("unknown service {svc}")));
    }
    if methods().contains(path) {
        return None;
    }
    Some(Status::unimplemented(format!("unknown method {method} for service {svc}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_gos_words_for_what_is_not_served() {
        assert!(unimplemented("/etcdserverpb.KV/Range").is_none());
        assert!(unimplemented("/modkvpb.Peer/Send").is_none());
        assert!(unimplemented("/grpc.health.v1.Health/Watch").is_none());
        let msg = |p: &str| unimplemented(p).map(|s| (s.code(), s.message().to_string()));
        let unimpl = |m: &str| Some((tonic::Code::Unimplemented, m.to_string()));
        assert_eq!(
            msg("/etcdserverpb.Maintenance/Downgrade"),
            unimpl("unknown method Downgrade for service etcdserverpb.Maintenance")
        );
        assert_eq!(
            msg("/etcdserverpb.Auth/AuthStatus"),
            unimpl("unknown method AuthStatus for service etcdserverpb.Auth")
        );
        assert_eq!(msg("/foo.Bar/Baz"), unimpl("unknown service foo.Bar"));
    }
}
