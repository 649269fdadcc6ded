//! Where kustomize's built-in transformers look, per kind: the default field specs of
//! kustomize v5 (labels, annotations, images, replicas, namespace, name references).

use std::sync::LazyLock;

use crate::fieldspec::FieldSpec;

/// The workloads whose pod templates carry labels and annotations, with their template paths.
const TEMPLATED: [(&str, &str, &str, &str); 8] = [
    ("", "v1", "ReplicationController", "spec/template"),
    ("", "", "Deployment", "spec/template"),
    ("", "", "ReplicaSet", "spec/template"),
    ("", "", "DaemonSet", "spec/template"),
    ("apps", "", "StatefulSet", "spec/template"),
    ("batch", "", "Job", "spec/template"),
    ("batch", "", "CronJob", "spec/jobTemplate"),
    ("batch", "", "CronJob", "spec/jobTemplate/spec/template"),
];

fn spec(group: &str, version: &str, kind: &str, path: &str, create: bool) -> FieldSpec {
    FieldSpec::new(kind, path, create)
        .with_group(group)
        .with_version(version)
}

fn metadata_fields(field: &str, with_claim_templates: bool) -> Vec<FieldSpec> {
    let mut specs = vec![FieldSpec::new("", &format!("metadata/{field}"), true)];
    for (group, version, kind, template) in TEMPLATED {
        specs.push(spec(
            group,
            version,
            kind,
            &format!("{template}/metadata/{field}"),
            true,
        ));
        if with_claim_templates && kind == "StatefulSet" {
            specs.push(spec(
                group,
                version,
                kind,
                "spec/volumeClaimTemplates[]/metadata/labels",
                true,
            ));
        }
    }
    specs
}

/// `labels` with `includeTemplates`: the object's labels and its pod templates'.
pub static TEMPLATE_LABELS: LazyLock<Vec<FieldSpec>> = LazyLock::new(|| metadata_fields("labels", true));

/// `commonLabels` and `labels` with `includeSelectors`: templates and selectors too.
pub static COMMON_LABELS: LazyLock<Vec<FieldSpec>> = LazyLock::new(|| {
    let mut specs = vec![
        spec("", "v1", "Service", "spec/selector", true),
        spec("", "v1", "ReplicationController", "spec/selector", true),
        spec("", "", "Deployment", "spec/selector/matchLabels", true),
    ];
    let affinity = |kind: &str, specs: &mut Vec<FieldSpec>| {
        for path in [
            "podAffinity/preferredDuringSchedulingIgnoredDuringExecution/podAffinityTerm",
            "podAffinity/requiredDuringSchedulingIgnoredDuringExecution",
            "podAntiAffinity/preferredDuringSchedulingIgnoredDuringExecution/podAffinityTerm",
            "podAntiAffinity/requiredDuringSchedulingIgnoredDuringExecution",
        ] {
            specs.push(spec(
                "apps",
                "",
                kind,
                &format!("spec/template/spec/affinity/{path}/labelSelector/matchLabels"),
                false,
            ));
        }
        specs.push(spec(
            "apps",
            "",
            kind,
            "spec/template/spec/topologySpreadConstraints/labelSelector/matchLabels",
            false,
        ));
    };
    affinity("Deployment", &mut specs);
    specs.push(spec("", "", "ReplicaSet", "spec/selector/matchLabels", true));
    specs.push(spec("", "", "DaemonSet", "spec/selector/matchLabels", true));
    specs.push(spec("apps", "", "StatefulSet", "spec/selector/matchLabels", true));
    affinity("StatefulSet", &mut specs);
    specs.extend([
        spec("batch", "", "Job", "spec/selector/matchLabels", false),
        spec(
            "batch",
            "",
            "CronJob",
            "spec/jobTemplate/spec/selector/matchLabels",
            false,
        ),
        spec(
            "policy",
            "",
            "PodDisruptionBudget",
            "spec/selector/matchLabels",
            false,
        ),
        spec(
            "networking.k8s.io",
            "",
            "NetworkPolicy",
            "spec/podSelector/matchLabels",
            false,
        ),
        spec(
            "networking.k8s.io",
            "",
            "NetworkPolicy",
            "spec/ingress/from/podSelector/matchLabels",
            false,
        ),
        spec(
            "networking.k8s.io",
            "",
            "NetworkPolicy",
            "spec/egress/to/podSelector/matchLabels",
            false,
        ),
    ]);
    specs.extend(metadata_fields("labels", true));
    specs
});

pub static COMMON_ANNOTATIONS: LazyLock<Vec<FieldSpec>> =
    LazyLock::new(|| metadata_fields("annotations", false));

pub static IMAGES: LazyLock<Vec<FieldSpec>> = LazyLock::new(|| {
    [
        "spec/containers[]/image",
        "spec/initContainers[]/image",
        "spec/template/spec/containers[]/image",
        "spec/template/spec/initContainers[]/image",
    ]
    .into_iter()
    .map(|path| FieldSpec::new("", path, true))
    .collect()
});

pub static REPLICAS: LazyLock<Vec<FieldSpec>> = LazyLock::new(|| {
    ["Deployment", "ReplicationController", "ReplicaSet", "StatefulSet"]
        .into_iter()
        .map(|kind| FieldSpec::new(kind, "spec/replicas", true))
        .collect()
});

/// Namespace fields beyond `metadata/namespace`.
pub static NAMESPACE: LazyLock<Vec<FieldSpec>> = LazyLock::new(|| {
    vec![
        FieldSpec::new("Namespace", "metadata/name", true),
        spec(
            "apiregistration.k8s.io",
            "",
            "APIService",
            "spec/service/namespace",
            true,
        ),
        spec(
            "apiextensions.k8s.io",
            "",
            "CustomResourceDefinition",
            "spec/conversion/webhook/clientConfig/service/namespace",
            false,
        ),
    ]
});

/// A kind whose name other objects refer to, and the fields that do.
#[derive(Clone, Debug)]
pub struct BackReference {
    pub group: String,
    pub version: String,
    pub kind: String,
    pub referrers: Vec<FieldSpec>,
}

/// Workloads and the path of their pod spec.
const POD_SPECS_WITH_TEMPLATES: [(&str, &str); 8] = [
    ("Pod", "spec"),
    ("PodTemplate", "template/spec"),
    ("Deployment", "spec/template/spec"),
    ("ReplicaSet", "spec/template/spec"),
    ("DaemonSet", "spec/template/spec"),
    ("StatefulSet", "spec/template/spec"),
    ("Job", "spec/template/spec"),
    ("CronJob", "spec/jobTemplate/spec/template/spec"),
];
const POD_SPECS_WITH_CONTROLLERS: [(&str, &str); 7] = [
    ("Pod", "spec"),
    ("StatefulSet", "spec/template/spec"),
    ("Deployment", "spec/template/spec"),
    ("ReplicationController", "spec/template/spec"),
    ("CronJob", "spec/jobTemplate/spec/template/spec"),
    ("Job", "spec/template/spec"),
    ("DaemonSet", "spec/template/spec"),
];

fn in_pod_specs(workloads: &[(&str, &str)], paths: &[&str]) -> Vec<FieldSpec> {
    let mut specs = Vec::new();
    for path in paths {
        for (kind, pod_spec) in workloads {
            specs.push(FieldSpec::new(kind, &format!("{pod_spec}/{path}"), false));
        }
    }
    specs
}

fn refs(list: &[(&str, &str, &str)]) -> Vec<FieldSpec> {
    list.iter()
        .map(|(group, kind, path)| FieldSpec::new(kind, path, false).with_group(group))
        .collect()
}

pub static NAME_REFERENCES: LazyLock<Vec<BackReference>> = LazyLock::new(|| {
    let scale_target = || refs(&[("", "HorizontalPodAutoscaler", "spec/scaleTargetRef/name")]);
    let mut config_map = in_pod_specs(
        &POD_SPECS_WITH_TEMPLATES,
        &[
            "volumes/configMap/name",
            "containers/env/valueFrom/configMapKeyRef/name",
            "initContainers/env/valueFrom/configMapKeyRef/name",
            "containers/envFrom/configMapRef/name",
            "initContainers/envFrom/configMapRef/name",
            "volumes/projected/sources/configMap/name",
        ],
    );
    config_map.extend(refs(&[
        ("", "Node", "spec/configSource/configMap"),
        ("", "Role", "rules/resourceNames"),
        ("", "ClusterRole", "rules/resourceNames"),
        (
            "",
            "Ingress",
            "metadata/annotations/nginx.ingress.kubernetes.io\\/fastcgi-params-configmap",
        ),
    ]));
    let mut secret = in_pod_specs(
        &POD_SPECS_WITH_TEMPLATES,
        &[
            "volumes/secret/secretName",
            "containers/env/valueFrom/secretKeyRef/name",
            "initContainers/env/valueFrom/secretKeyRef/name",
            "containers/envFrom/secretRef/name",
            "initContainers/envFrom/secretRef/name",
            "imagePullSecrets/name",
            "volumes/projected/sources/secret/name",
        ],
    );
    secret.extend(refs(&[
        ("", "Ingress", "spec/tls/secretName"),
        (
            "",
            "Ingress",
            "metadata/annotations/ingress.kubernetes.io\\/auth-secret",
        ),
        (
            "",
            "Ingress",
            "metadata/annotations/nginx.ingress.kubernetes.io\\/auth-secret",
        ),
        (
            "",
            "Ingress",
            "metadata/annotations/nginx.ingress.kubernetes.io\\/auth-tls-secret",
        ),
        ("", "ServiceAccount", "imagePullSecrets/name"),
        ("", "StorageClass", "parameters/secretName"),
        ("", "StorageClass", "parameters/adminSecretName"),
        ("", "StorageClass", "parameters/userSecretName"),
        ("", "StorageClass", "parameters/secretRef"),
        ("", "Role", "rules/resourceNames"),
        ("", "ClusterRole", "rules/resourceNames"),
        (
            "serving.knative.dev",
            "Service",
            "spec/template/spec/containers/env/valueFrom/secretKeyRef/name",
        ),
        ("", "PersistentVolume", "spec/azureFile/secretName"),
    ]));
    let rbac = "rbac.authorization.k8s.io";
    let admission = "admissionregistration.k8s.io";
    let back = |group: &str, version: &str, kind: &str, referrers| BackReference {
        group: group.into(),
        version: version.into(),
        kind: kind.into(),
        referrers,
    };
    let pv = refs(&[
        ("", "PersistentVolumeClaim", "spec/volumeName"),
        ("", "ClusterRole", "rules/resourceNames"),
    ]);
    vec![
        back("", "", "Deployment", scale_target()),
        back("", "", "ReplicationController", scale_target()),
        back("", "", "ReplicaSet", scale_target()),
        back("", "", "StatefulSet", scale_target()),
        back("", "v1", "ConfigMap", config_map),
        back("", "v1", "Secret", secret),
        back(
            "",
            "v1",
            "Service",
            refs(&[
                ("apps", "StatefulSet", "spec/serviceName"),
                ("", "Ingress", "spec/rules/http/paths/backend/serviceName"),
                ("", "Ingress", "spec/backend/serviceName"),
                ("", "Ingress", "spec/rules/http/paths/backend/service/name"),
                ("", "Ingress", "spec/defaultBackend/service/name"),
                ("apiregistration.k8s.io", "APIService", "spec/service/name"),
                (
                    admission,
                    "ValidatingWebhookConfiguration",
                    "webhooks/clientConfig/service",
                ),
                (
                    admission,
                    "MutatingWebhookConfiguration",
                    "webhooks/clientConfig/service",
                ),
            ]),
        ),
        back(rbac, "", "Role", refs(&[(rbac, "RoleBinding", "roleRef/name")])),
        back(
            rbac,
            "",
            "ClusterRole",
            refs(&[
                (rbac, "RoleBinding", "roleRef/name"),
                (rbac, "ClusterRoleBinding", "roleRef/name"),
            ]),
        ),
        back("", "v1", "ServiceAccount", {
            let mut specs = refs(&[
                (rbac, "RoleBinding", "subjects"),
                (rbac, "ClusterRoleBinding", "subjects"),
            ]);
            specs.extend(in_pod_specs(&POD_SPECS_WITH_CONTROLLERS, &["serviceAccountName"]));
            specs
        }),
        back(
            "",
            "v1",
            "PersistentVolumeClaim",
            in_pod_specs(
                &POD_SPECS_WITH_CONTROLLERS,
                &["volumes/persistentVolumeClaim/claimName"],
            ),
        ),
        back("", "v1", "PersistentVolume", pv),
        back(
            "storage.k8s.io",
            "v1",
            "StorageClass",
            refs(&[
                ("", "PersistentVolume", "spec/storageClassName"),
                ("", "PersistentVolumeClaim", "spec/storageClassName"),
                (
                    "",
                    "StatefulSet",
                    "spec/volumeClaimTemplates/spec/storageClassName",
                ),
            ]),
        ),
        back(
            "scheduling.k8s.io",
            "v1",
            "PriorityClass",
            in_pod_specs(&POD_SPECS_WITH_CONTROLLERS, &["priorityClassName"]),
        ),
        // kustomize's own table names the group "networking.k8s.io/v1" here, so it never matches;
        // kept as is to produce the same output.
        back(
            "networking.k8s.io/v1",
            "v1",
            "IngressClass",
            refs(&[("", "Ingress", "spec/ingressClassName")]),
        ),
        back(
            admission,
            "",
            "ValidatingAdmissionPolicy",
            refs(&[(admission, "ValidatingAdmissionPolicyBinding", "spec/policyName")]),
        ),
    ]
});

/// Where `$(VAR)` is substituted: kustomize's varReference field specs.
pub static VAR_REFERENCES: LazyLock<Vec<FieldSpec>> = LazyLock::new(|| {
    let mut specs = Vec::new();
    let workloads = [
        (
            "CronJob",
            "spec/jobTemplate/spec/template/spec",
            "spec/jobTemplate/spec/template/volumes/nfs/server",
        ),
        (
            "DaemonSet",
            "spec/template/spec",
            "spec/template/spec/volumes/nfs/server",
        ),
        (
            "Deployment",
            "spec/template/spec",
            "spec/template/spec/volumes/nfs/server",
        ),
        (
            "Job",
            "spec/template/spec",
            "spec/template/spec/volumes/nfs/server",
        ),
        ("Pod", "spec", "spec/volumes/nfs/server"),
        (
            "ReplicaSet",
            "spec/template/spec",
            "spec/template/spec/volumes/nfs/server",
        ),
        (
            "StatefulSet",
            "spec/template/spec",
            "spec/volumeClaimTemplates/spec/nfs/server",
        ),
    ];
    for (kind, pod_spec, nfs) in workloads {
        for containers in ["containers", "initContainers"] {
            for field in ["args", "command", "env/value", "volumeMounts/mountPath"] {
                specs.push(FieldSpec::new(
                    kind,
                    &format!("{pod_spec}/{containers}/{field}"),
                    false,
                ));
            }
        }
        specs.push(FieldSpec::new(kind, nfs, false));
    }
    specs.extend([
        FieldSpec::new("Deployment", "spec/template/metadata/annotations", false),
        FieldSpec::new("Ingress", "spec/rules/host", false),
        FieldSpec::new("Ingress", "spec/tls/hosts", false),
        FieldSpec::new("Ingress", "spec/tls/secretName", false),
        FieldSpec::new("Service", "spec/ports/port", false),
        FieldSpec::new("Service", "spec/ports/targetPort", false),
        FieldSpec::new("PersistentVolume", "spec/nfs/server", false),
        FieldSpec::new("", "metadata/labels", false),
        FieldSpec::new("", "metadata/annotations", false),
    ]);
    specs
});
