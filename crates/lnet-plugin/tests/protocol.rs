//! The calls as dockerd 20.10.24 sends them (`../shared/reference/integration.md` §2, read
//! off the wire), parsed; and what a request that cannot be acted on gets.

use lnet_plugin::{
    Api, CreateEndpointResponse, EndpointInterface, InterfaceName, JoinResponse, Proto,
    ProtocolError, Request, endpoint_mac, exposed_ports, network_options, port_bindings,
};

fn parse(path: &str, body: &str) -> Request {
    Request::parse(path, body.as_bytes()).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn activation_and_capabilities_need_no_body() {
    assert_eq!(parse("/Plugin.Activate", ""), Request::Activate);
    assert_eq!(
        parse("/NetworkDriver.GetCapabilities", "{}"),
        Request::NetworkCapabilities
    );
    assert_eq!(
        parse("/IpamDriver.GetCapabilities", ""),
        Request::IpamCapabilities
    );
    assert_eq!(
        parse("/IpamDriver.GetDefaultAddressSpaces", "null"),
        Request::DefaultAddressSpaces
    );
    assert_eq!(lnet_plugin::IMPLEMENTS, ["NetworkDriver", "IpamDriver"]);
}

#[test]
fn create_network_as_dockerd_sends_it() {
    let r = parse(
        "/NetworkDriver.CreateNetwork",
        r#"{"NetworkID":"4f1e","Options":{"com.docker.network.enable_ipv6":false,"com.docker.network.generic":{"com.docker.network.bridge.enable_icc":"false"}},
            "IPv4Data":[{"AddressSpace":"LocalDefault","Pool":"10.99.0.0/24","Gateway":"10.99.0.1/24","AuxAddresses":null}],"IPv6Data":[]}"#,
    );
    let Request::CreateNetwork(c) = r else {
        panic!("{r:?}")
    };
    assert_eq!(c.network_id, "4f1e");
    assert_eq!(c.ipv4_data[0].pool.to_string(), "10.99.0.0/24");
    assert_eq!(c.ipv4_data[0].gateway.unwrap().to_string(), "10.99.0.1/24");
    assert!(c.ipv4_data[0].aux_addresses.is_empty() && c.ipv6_data.is_empty());
    let o = network_options("CreateNetwork", &c.options).unwrap();
    assert!(!o.enable_ipv6);
    assert_eq!(o.generic["com.docker.network.bridge.enable_icc"], "false");
}

#[test]
fn create_endpoint_carries_the_mac_in_base64_and_the_ports() {
    let r = parse(
        "/NetworkDriver.CreateEndpoint",
        r#"{"NetworkID":"n","EndpointID":"e","Interface":{"Address":"10.99.0.5/24","AddressIPv6":"","MacAddress":""},
            "Options":{"com.docker.network.endpoint.exposedports":[{"Proto":6,"Port":80}],
                       "com.docker.network.endpoint.macaddress":"AkIKYwAF",
                       "com.docker.network.portmap":[{"Proto":6,"IP":"","Port":80,"HostIP":"","HostPort":8080,"HostPortEnd":8080}]}}"#,
    );
    let Request::CreateEndpoint(c) = r else {
        panic!("{r:?}")
    };
    assert_eq!(c.interface.as_ref().unwrap().address, "10.99.0.5/24");
    assert_eq!(
        endpoint_mac("CreateEndpoint", &c.options).unwrap(),
        Some([0x02, 0x42, 0x0a, 0x63, 0x00, 0x05])
    );
    let ports = port_bindings("CreateEndpoint", &c.options).unwrap();
    assert_eq!(
        (ports[0].proto, ports[0].port, ports[0].host_port),
        (Proto::Tcp, 80, 8080)
    );
    assert_eq!(ports[0].host_addr(), Ok(None));
    assert_eq!(
        exposed_ports("CreateEndpoint", &c.options).unwrap()[0].port,
        80
    );
    // dockerd gave the address: the answer leaves the interface out.
    assert_eq!(
        serde_json::to_value(CreateEndpointResponse::default()).unwrap(),
        serde_json::json!({})
    );
    let chosen = CreateEndpointResponse {
        interface: Some(EndpointInterface {
            address: "10.99.0.6/24".into(),
            ..Default::default()
        }),
    };
    assert_eq!(
        serde_json::to_value(chosen).unwrap(),
        serde_json::json!({"Interface": {"Address": "10.99.0.6/24", "AddressIPv6": "", "MacAddress": ""}})
    );
}

#[test]
fn join_and_its_answer() {
    let r = parse(
        "/NetworkDriver.Join",
        r#"{"NetworkID":"n","EndpointID":"e","SandboxKey":"/var/run/docker/netns/1b2c","Options":null}"#,
    );
    let Request::Join(j) = r else { panic!("{r:?}") };
    assert_eq!(j.sandbox_key, "/var/run/docker/netns/1b2c");
    assert!(j.options.is_empty());
    let answer = JoinResponse {
        interface_name: Some(InterfaceName {
            src_name: "veth0a1b2c3".into(),
            dst_prefix: "eth".into(),
        }),
        gateway: "10.99.0.1".into(),
        ..Default::default()
    };
    let v = serde_json::to_value(answer).unwrap();
    assert_eq!(v["InterfaceName"]["SrcName"], "veth0a1b2c3");
    assert_eq!(v["InterfaceName"]["DstPrefix"], "eth");
    assert_eq!(v["Gateway"], "10.99.0.1");
    assert_eq!(v["StaticRoutes"], serde_json::json!([]));
    for call in [
        "Leave",
        "DeleteEndpoint",
        "RevokeExternalConnectivity",
        "EndpointOperInfo",
    ] {
        let r = parse(
            &format!("/NetworkDriver.{call}"),
            r#"{"NetworkID":"n","EndpointID":"e"}"#,
        );
        assert_eq!(r.api(), Api::Network, "{call}");
    }
}

#[test]
fn ipam_calls_and_the_gateway_request() {
    let Request::RequestPool(p) = parse(
        "/IpamDriver.RequestPool",
        r#"{"AddressSpace":"LocalDefault","Pool":"10.99.0.0/24","SubPool":"","Options":{},"V6":false}"#,
    ) else {
        panic!()
    };
    assert_eq!((p.pool.as_str(), p.v6), ("10.99.0.0/24", false));
    let Request::RequestAddress(gw) = parse(
        "/IpamDriver.RequestAddress",
        r#"{"PoolID":"LocalDefault/10.99.0.0/24","Address":"","Options":{"RequestAddressType":"com.docker.network.gateway"}}"#,
    ) else {
        panic!()
    };
    assert!(gw.is_gateway());
    let Request::RequestAddress(ctr) = parse(
        "/IpamDriver.RequestAddress",
        r#"{"PoolID":"LocalDefault/10.99.0.0/24","Address":"","Options":null}"#,
    ) else {
        panic!()
    };
    assert!(!ctr.is_gateway() && ctr.options.is_empty());
    let r = parse(
        "/IpamDriver.ReleaseAddress",
        r#"{"PoolID":"LocalDefault/10.99.0.0/24","Address":"10.99.0.5"}"#,
    );
    assert_eq!(r.api(), Api::Ipam);
}

#[test]
fn a_retry_with_an_empty_body_is_its_own_error_in_each_apis_envelope() {
    let e = Request::parse("/NetworkDriver.CreateEndpoint", b"").unwrap_err();
    assert_eq!(
        e,
        ProtocolError::EmptyBody {
            call: "CreateEndpoint"
        }
    );
    assert!(e.to_string().contains("empty body"), "{e}");
    let e = Request::parse("/IpamDriver.RequestAddress", b"  \n").unwrap_err();
    assert_eq!(
        e,
        ProtocolError::EmptyBody {
            call: "RequestAddress"
        }
    );
    assert_eq!(Api::Network.error("no"), serde_json::json!({"Err": "no"}));
    assert_eq!(Api::Ipam.error("no"), serde_json::json!({"Error": "no"}));
    assert_eq!(lnet_plugin::api_of("/IpamDriver.RequestPool"), Api::Ipam);
}

#[test]
fn bad_requests_name_the_call_and_the_field() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "/NetworkDriver.CreateNetwork",
            r#"{"Options":{}}"#,
            "NetworkID",
        ),
        (
            "/NetworkDriver.CreateNetwork",
            r#"{"NetworkID":"n","IPv4Data":[{"Pool":"10.0.0.300/24"}]}"#,
            "CreateNetwork",
        ),
        (
            "/NetworkDriver.Join",
            r#"{"NetworkID":"n","EndpointID":"e"}"#,
            "SandboxKey",
        ),
        ("/IpamDriver.ReleasePool", r#"["PoolID"]"#, "ReleasePool"),
        ("/NetworkDriver.Leave", "{not json", "Leave"),
    ];
    for (path, body, want) in cases {
        let e = Request::parse(path, body.as_bytes())
            .unwrap_err()
            .to_string();
        assert!(e.contains(want), "{path} {body}: {e}");
    }
    let e = Request::parse("/NetworkDriver.Nonsense", b"{}").unwrap_err();
    assert!(matches!(e, ProtocolError::UnknownCall { .. }), "{e:?}");
}

#[test]
fn bad_options_name_the_option_and_what_is_allowed() {
    let opts = |v: serde_json::Value| v.as_object().unwrap().clone();
    let e = endpoint_mac(
        "CreateEndpoint",
        &opts(serde_json::json!({"com.docker.network.endpoint.macaddress": "AkIKYwA="})),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("5 bytes") && e.contains("macaddress"), "{e}");
    let e = endpoint_mac(
        "CreateEndpoint",
        &opts(serde_json::json!({"com.docker.network.endpoint.macaddress": "not base64!"})),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("not base64"), "{e}");
    let e = port_bindings(
        "CreateEndpoint",
        &opts(serde_json::json!({"com.docker.network.portmap":
            [{"Proto":6,"Port":80,"HostPort":8090,"HostPortEnd":8080}]})),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("run backwards"), "{e}");
    let e = port_bindings(
        "CreateEndpoint",
        &opts(serde_json::json!({"com.docker.network.portmap": [{"Proto":99,"Port":80}]})),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("6 tcp, 17 udp, 132 sctp"), "{e}");
    let e = port_bindings(
        "CreateEndpoint",
        &opts(serde_json::json!({"com.docker.network.portmap":
            [{"Proto":17,"Port":53,"HostIP":"localhost"}]})),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("HostIP") && e.contains("not an IP address"),
        "{e}"
    );
    let e = network_options(
        "CreateNetwork",
        &opts(serde_json::json!({"com.docker.network.enable_ipv6": "yes"})),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("enable_ipv6") && e.contains("true or false"),
        "{e}"
    );
}

#[test]
fn no_bytes_make_the_parser_panic() {
    // Every call's path with bodies cut short, mangled and of the wrong shape: an error or
    // a request, never a panic.
    let paths = [
        "/Plugin.Activate",
        "/NetworkDriver.CreateNetwork",
        "/NetworkDriver.CreateEndpoint",
        "/NetworkDriver.Join",
        "/NetworkDriver.ProgramExternalConnectivity",
        "/IpamDriver.RequestPool",
        "/IpamDriver.RequestAddress",
    ];
    let whole = br#"{"NetworkID":"n","EndpointID":"e","SandboxKey":"k","PoolID":"p","Options":{"com.docker.network.portmap":[{"Proto":6,"Port":80}]},"IPv4Data":[{"Pool":"10.0.0.0/8"}]}"#;
    for path in paths {
        for cut in 0..whole.len() {
            let _ = Request::parse(path, &whole[..cut]);
            let mut mangled = whole.to_vec();
            mangled[cut] ^= 0x5a;
            let _ = Request::parse(path, &mangled);
        }
        for junk in ["[]", "1", "\"x\"", "{\"NetworkID\":7}", "\u{0}\u{ff}"] {
            let _ = Request::parse(path, junk.as_bytes());
        }
    }
}
