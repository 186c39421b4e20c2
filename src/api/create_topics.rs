//! CreateTopics, including `validate_only`.

use std::collections::BTreeMap;
use std::rc::Rc;

use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};
use kafka_protocol::protocol::StrBytes;

use super::{log_client_error, respond, Outcome};
use crate::admin::{self, NewTopic};
use crate::error::ErrorCode;
use crate::protocol::request::{Request, RequestError};
use crate::shard::Shard;

pub async fn handle(shard: &Rc<Shard>, req: &Request) -> Result<Outcome, RequestError> {
    let body: CreateTopicsRequest = req.decode_body()?;
    let mut new = Vec::new();
    let mut early: Vec<Option<(ErrorCode, String)>> = Vec::new();
    for t in &body.topics {
        let configs: BTreeMap<String, String> = t
            .configs
            .iter()
            .filter_map(|c| Some((c.name.to_string(), c.value.as_ref()?.to_string())))
            .collect();
        early.push((!t.assignments.is_empty()).then(|| {
            (
                ErrorCode::InvalidRequest,
                "manual replica assignment is not supported on a single node".to_string(),
            )
        }));
        new.push(NewTopic {
            name: t.name.0.to_string(),
            partitions: t.num_partitions,
            replication_factor: t.replication_factor,
            configs,
        });
    }
    let to_create: Vec<NewTopic> = new
        .iter()
        .zip(&early)
        .filter(|(_, e)| e.is_none())
        .map(|(n, _)| n.clone())
        .collect();
    let mut created = admin::create_topics(shard, to_create, body.validate_only)
        .await
        .into_iter();
    let topics = new
        .iter()
        .zip(early)
        .map(|(n, e)| {
            let outcome = match e {
                Some(err) => Err(err),
                None => created.next().expect("one result per topic"),
            };
            let r = CreatableTopicResult::default().with_name(kafka_protocol::messages::TopicName(
                StrBytes::from_string(n.name.clone()),
            ));
            match outcome {
                Ok(meta) => r
                    .with_topic_id(meta.id)
                    .with_num_partitions(meta.partitions)
                    .with_replication_factor(1),
                Err((code, msg)) => {
                    log_client_error(req, &format!("create topic {}", n.name), code, &msg);
                    r.with_error_code(code.code())
                        .with_error_message(Some(StrBytes::from_string(msg)))
                        .with_num_partitions(-1)
                        .with_replication_factor(-1)
                }
            }
        })
        .collect();
    respond(req, &CreateTopicsResponse::default().with_topics(topics))
}
