//! Tests of the allocator through its public API: `rules` checks each rule
//! by example, `props` checks allocation sequences against a model.

mod props;
mod rules;

use std::net::IpAddr;

use ipnet::IpNet;

use crate::{AddressRequest, AddressSpace, Ipam, IpamConfig, PoolLease, PoolRequest};

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn ipam() -> Ipam {
    Ipam::new(IpamConfig::default()).unwrap()
}

fn explicit(space: AddressSpace, pool: &str, sub: Option<&str>) -> PoolRequest {
    let pool = net(pool);
    PoolRequest {
        space,
        pool: Some(pool),
        sub_pool: sub.map(net),
        v6: matches!(pool, IpNet::V6(_)),
        exclude: vec![],
    }
}

fn local(pool: &str) -> PoolRequest {
    explicit(AddressSpace::Local, pool, None)
}

fn lease(ipam: &mut Ipam, pool: &str) -> PoolLease {
    ipam.request_pool(&local(pool)).unwrap()
}

fn dynamic() -> AddressRequest {
    AddressRequest::default()
}

fn serial() -> AddressRequest {
    AddressRequest {
        preferred: None,
        serial: true,
    }
}

fn preferred(s: &str) -> AddressRequest {
    AddressRequest {
        preferred: Some(ip(s)),
        serial: false,
    }
}
