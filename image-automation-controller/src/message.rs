//! The commit message: Flux's template data (`.AutomationObject`, `.Changed` with
//! `.FileChanges`, `.Changes` and `.Objects`, `.Values`) rendered by [`crate::template`].

use crate::{
    automation::reasons,
    setters::{Change, FileChanges, ObjectId},
    template::{Template, TemplateError, Value},
};
use driftless_runtime::reconcile::ReconcileError;
use std::collections::BTreeMap;

/// Fields Flux removed (the error Go gives for them), with what to use instead.
const REMOVED_FIELDS: &[(&str, &str)] = &[
    (
        "can't evaluate field Updated in type source.TemplateData",
        "template uses removed '.Updated' field. Please use '.Changed' instead.",
    ),
    (
        "can't evaluate field ImageResult in type update.Result",
        "template uses removed '.Changed.ImageResult' field. Please use '.Changed.FileChanges' or '.Changed.Objects' instead.",
    ),
];
const TEMPLATE_DOCS: &str =
    "https://fluxcd.io/flux/components/image/imageupdateautomations/#message-template";

/// A parsed commit message template.
#[derive(Debug)]
pub struct MessageTemplate(Template);

impl MessageTemplate {
    /// Parses `source` (Go text/template syntax).
    pub fn parse(source: &str) -> Result<Self, TemplateError> {
        Template::parse("commit message", source).map(Self)
    }

    /// The message for automation `namespace/name` after `changes`, with `values`.
    pub fn render(
        &self,
        namespace: &str,
        name: &str,
        changes: &FileChanges,
        values: &BTreeMap<String, String>,
    ) -> Result<String, ReconcileError> {
        self.0
            .execute(&data(namespace, name, changes, values))
            .map_err(|e| {
                for (error, message) in REMOVED_FIELDS {
                    if e.0.contains(error) {
                        return ReconcileError::stalled(
                            reasons::REMOVED_TEMPLATE_FIELD,
                            format!("{message} See: {TEMPLATE_DOCS}"),
                        );
                    }
                }
                ReconcileError::transient(
                    reasons::GIT_OPERATION_FAILED,
                    format!("failed to update source: failed to run template from spec: {e}"),
                )
            })
    }
}

fn object_id(id: &ObjectId) -> Value {
    Value::object(
        "update.ObjectIdentifier",
        vec![
            ("APIVersion", Value::Str(id.api_version.clone())),
            ("Kind", Value::Str(id.kind.clone())),
            ("Name", Value::Str(id.name.clone())),
            ("Namespace", Value::Str(id.namespace.clone())),
        ],
        // Go's %v of the nested struct.
        format!(
            "{{{{{{{} {}}} {{{} {}}}}}}}",
            id.api_version, id.kind, id.name, id.namespace
        ),
    )
}

fn change(c: &Change) -> Value {
    Value::object(
        "update.Change",
        vec![
            ("OldValue", Value::Str(c.old_value.clone())),
            ("NewValue", Value::Str(c.new_value.clone())),
            ("Setter", Value::Str(c.setter.clone())),
        ],
        format!("{{{} {} {}}}", c.old_value, c.new_value, c.setter),
    )
}

/// Flux's `TemplateData`.
fn data(namespace: &str, name: &str, changes: &FileChanges, values: &BTreeMap<String, String>) -> Value {
    let file_changes = Value::map(
        changes
            .iter()
            .map(|(file, objects)| {
                let objects = objects
                    .iter()
                    .map(|(id, cs)| (object_id(id), Value::List(cs.iter().map(change).collect())))
                    .collect();
                (Value::Str(file.clone()), Value::map(objects))
            })
            .collect(),
    );
    // `.Changes`: every change once; `.Objects`: the changes of each object across files.
    let mut all: Vec<&Change> = Vec::new();
    let mut by_object: BTreeMap<&ObjectId, Vec<&Change>> = BTreeMap::new();
    for objects in changes.values() {
        for (id, cs) in objects {
            for c in cs {
                if !all.contains(&c) {
                    all.push(c);
                }
                by_object.entry(id).or_default().push(c);
            }
        }
    }
    let objects = Value::map(
        by_object
            .into_iter()
            .map(|(id, cs)| (object_id(id), Value::List(cs.into_iter().map(change).collect())))
            .collect(),
    );
    Value::object(
        "source.TemplateData",
        vec![
            (
                "AutomationObject",
                Value::object(
                    "types.NamespacedName",
                    vec![
                        ("Name", Value::Str(name.into())),
                        ("Namespace", Value::Str(namespace.into())),
                    ],
                    format!("{namespace}/{name}"),
                ),
            ),
            (
                "Changed",
                Value::object(
                    "update.Result",
                    vec![
                        ("FileChanges", file_changes),
                        ("Changes", Value::List(all.into_iter().map(change).collect())),
                        ("Objects", objects),
                    ],
                    "{map[]}",
                ),
            ),
            (
                "Values",
                Value::map(
                    values
                        .iter()
                        .map(|(k, v)| (Value::Str(k.clone()), Value::Str(v.clone())))
                        .collect(),
                ),
            ),
        ],
        "{}",
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use driftless_runtime::reconcile::ErrorClass;

    #[test]
    fn removed_fields_stall_with_flux_message() {
        let t = MessageTemplate::parse("{{ range .Updated.Images }}{{ . }}{{ end }}").unwrap();
        let e = t
            .render("ns", "auto", &FileChanges::new(), &BTreeMap::new())
            .unwrap_err();
        assert_eq!(e.reason, "RemovedTemplateField");
        assert_eq!(e.class, ErrorClass::Stalled);
        assert!(
            e.message.starts_with("template uses removed '.Updated' field."),
            "{}",
            e.message
        );
    }

    #[test]
    fn default_message_and_values() {
        let t = MessageTemplate::parse("{{ .AutomationObject.Name }} in {{ .Values.cluster }}").unwrap();
        let values = BTreeMap::from([("cluster".to_string(), "prod".to_string())]);
        assert_eq!(
            t.render("ns", "auto", &FileChanges::new(), &values).unwrap(),
            "auto in prod"
        );
    }
}
