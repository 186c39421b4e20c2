//! DescribeCluster: the brokers and the active controller (this node, on a single node).

use std::rc::Rc;

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};
use kafka_protocol::protocol::StrBytes;

use super::{
    log_client_error, respond, Outcome, Session, CLUSTER_AUTHORIZED_OPERATIONS,
    OPERATIONS_NOT_REQUESTED,
};
use crate::error::ErrorCode;
use crate::protocol::request::{Request, RequestError};
use crate::shard::Shard;

/// DescribeCluster v1 `endpoint_type`: brokers (1) or controllers (2).
const ENDPOINT_BROKERS: i8 = 1;

pub async fn handle(
    shard: &Rc<Shard>,
    req: &Request,
    _session: &Session,
) -> Result<Outcome, RequestError> {
    let body: DescribeClusterRequest = req.decode_body()?;
    let mut resp = DescribeClusterResponse::default()
        .with_cluster_id(StrBytes::from_string(shard.metadata().cluster_id.clone()))
        .with_controller_id(BrokerId(super::metadata::controller_id(shard)))
        .with_cluster_authorized_operations(if body.include_cluster_authorized_operations {
            CLUSTER_AUTHORIZED_OPERATIONS
        } else {
            OPERATIONS_NOT_REQUESTED
        });
    if req.version() >= 1 {
        resp = resp.with_endpoint_type(body.endpoint_type);
    }
    if body.endpoint_type != ENDPOINT_BROKERS {
        // Kafka serves controller endpoints only to clients that bootstrap from controllers.
        let code = ErrorCode::UnsupportedEndpointType;
        let msg = "this node serves broker endpoints only".to_string();
        log_client_error(req, "describe cluster", code, &msg);
        return respond(
            req,
            &resp
                .with_error_code(code.code())
                .with_error_message(Some(StrBytes::from_string(msg))),
        );
    }
    let brokers = super::metadata::brokers(shard)
        .into_iter()
        .map(|b| {
            DescribeClusterBroker::default()
                .with_broker_id(BrokerId(b.id))
                .with_host(StrBytes::from_string(b.host))
                .with_port(b.port)
                .with_rack(b.rack.map(StrBytes::from_string))
        })
        .collect();
    respond(req, &resp.with_brokers(brokers))
}
