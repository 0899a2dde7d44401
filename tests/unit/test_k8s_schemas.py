"""deploy/k8s is valid, offline: the generated base and every overlay as Kustomize renders it.

Core resources are checked against the Kubernetes API schemas (kubernetes-validate, strict:
an unknown key fails) of the oldest Kubernetes that Strimzi 1.x supports and the newest
known. The operators' resources are checked per kind against the fields their CRDs declare
(CRDS below: Strimzi 1.2 `kafka.strimzi.io/v1`, KEDA 2.20 `keda.sh/v1alpha1`, Prometheus
Operator 0.93 `monitoring.coreos.com/v1`): required fields, types, enums and bounds, and no
key the CRD lacks, at every level we write. Overlays are rendered by a small Kustomize of the
features they use (any other fails here), and by `kubectl kustomize` too where it is
installed, which must agree.
"""

from __future__ import annotations

import base64
import copy
import json
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from mbs.settings import Settings

Json = dict[str, Any]
K8S = Path(__file__).resolve().parents[2] / "deploy" / "k8s"
KUBERNETES = ("1.30.0", kubernetes_validate.latest_version())
OVERLAYS = sorted(p.name for p in (K8S / "overlays").iterdir())
# kubernetes-validate parses its multi-megabyte schema files again on every call: once will do.
kubernetes_validate.utils.schema_contents = cache(kubernetes_validate.utils.schema_contents)

# A key ending in `!` is required; every object is closed (a key its CRD lacks fails); `any`
# is a key the CRD declares that we do not write (`a b c: any` for several). Leaves: str, int,
# bool, int>=N, free (an object of anything: Kafka configs), strmap, qty (resource
# quantities), dur (a duration), enum:a|b, re:PATTERN, const:VALUE; [x] is an array of x.
CRDS = yaml.safe_load(r"""
kafka.strimzi.io/v1:
  Kafka:
    kafka!:
      listeners!:
        - name!: re:^[a-z0-9]{1,11}$
          port!: int>=9092
          type!: enum:internal|route|tlsroute|loadbalancer|nodeport|ingress|cluster-ip
          tls!: bool
          authentication: {type!: enum:tls|scram-sha-512|custom, listenerConfig sasl: any}
          configuration networkPolicyPeers: any
      config: free
      authorization: {type!: enum:simple|custom, superUsers: [str], authorizerClass: any,
                      supportsAdminApi: any}
      version metadataVersion image rack brokerRackInitImage livenessProbe: any
      readinessProbe jvmOptions jmxOptions metricsConfig logging template: any
      tieredStorage quotas: any
    entityOperator:
      topicOperator: {watchedNamespace image reconciliationIntervalMs startupProbe: any,
                      livenessProbe readinessProbe resources logging jvmOptions: any}
      userOperator: {watchedNamespace image reconciliationIntervalMs secretPrefix: any,
                     livenessProbe readinessProbe resources logging jvmOptions: any}
      template: any
    clusterCa clientsCa cruiseControl kafkaExporter maintenanceTimeWindows: any
  KafkaNodePool:
    replicas!: int>=0
    roles!: [enum:controller|broker]
    storage!:
      type!: enum:jbod
      volumes:
        - {type!: enum:ephemeral|persistent-claim, id: int>=0, size: str, deleteClaim: bool,
           kraftMetadata: enum:shared, class selector sizeLimit volumeAttributesClass: any}
    resources: {requests: qty, limits: qty, claims: any}
    jvmOptions template: any
  KafkaTopic: {topicName: str, partitions: int>=1, replicas: int>=1, config: free}
  KafkaUser:
    authentication: {type!: enum:tls|tls-external|scram-sha-512, password: any}
    authorization:
      type!: enum:simple
      acls!:
        - type: enum:allow|deny
          host: str
          resource!: {type!: enum:topic|group|cluster|transactionalId, name: str,
                      patternType: enum:literal|prefix}
          operations!: [enum:Read|Write|Create|Delete|Alter|Describe|All]
    quotas template: any
keda.sh/v1alpha1:
  ScaledObject:
    scaleTargetRef!: {name!: str, apiVersion: str, kind: str, envSourceContainerName: str}
    minReplicaCount: int>=0
    maxReplicaCount: int>=1
    pollingInterval: int>=1
    cooldownPeriod: int>=0
    triggers!:
      - type!: const:kafka
        metadata!:  # the kafka scaler's parameters (pkg/scalers/kafka_scaler.go)
          bootstrapServers!: str
          consumerGroup!: str
          topic: str
          lagThreshold: re:^[0-9]+$
          offsetResetPolicy: enum:latest|earliest
          allowIdleConsumers: enum:true|false
          sasl: enum:none|plaintext|scram_sha256|scram_sha512|oauthbearer|gssapi
          tls: enum:enable|disable
          activationLagThreshold partitionLimitation excludePersistentLag version: any
          limitToPartitionsWithLag scaleToZeroOnInvalidOffset unsafeSsl: any
        authenticationRef: {name!: str, kind: enum:TriggerAuthentication}
        name metricType useCachedMetrics: any
    advanced fallback idleReplicaCount initialCooldownPeriod: any
  TriggerAuthentication:
    env: [{name!: str, parameter!: str, containerName: str}]
    secretTargetRef: [{key!: str, name!: str, parameter!: str}]
    configMapTargetRef podIdentity hashiCorpVault filePath: any
monitoring.coreos.com/v1:
  ServiceMonitor:
    selector!: {matchLabels: strmap, matchExpressions: any}
    endpoints!:
      - port: str
        path: str
        interval: dur
        honorLabels: bool
        scheme: enum:http|https
        authorization: {type: str, credentials: {key!: str, name: str, optional: bool}}
        relabelings:
          - {action: enum:replace|keep|drop|labelmap|labeldrop|labelkeep, sourceLabels: [str],
             targetLabel: str, replacement: str, separator regex modulus: any}
        basicAuth metricRelabelings scrapeTimeout tlsConfig: any
    jobLabel namespaceSelector targetLabels podTargetLabels: any
  PrometheusRule:
    groups:
      - name!: re:^.+$
        interval: dur
        rules:
          - {expr!: str, record: str, alert: str, for: dur, keep_firing_for: dur,
             labels: strmap, annotations: strmap}
""")
LEAVES: dict[str, Json] = {
    "str": {"type": "string"},
    "int": {"type": "integer"},
    "bool": {"type": "boolean"},
    "any": {},
    "free": {"type": "object"},
    "strmap": {"type": "object", "additionalProperties": {"type": "string"}},
    "qty": {"type": "object", "additionalProperties": {"type": ["string", "integer"]}},
    "dur": {
        "type": "string",
        "pattern": r"^(0|(\d+y)?(\d+w)?(\d+d)?(\d+h)?(\d+m)?(\d+s)?(\d+ms)?)$",
    },
}
LABEL = r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"
NAME = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"


def schema(spec: Any) -> Json:
    """The JSON Schema of one node of CRDS."""
    if isinstance(spec, list):
        return {"type": "array", "items": schema(spec[0])}
    if isinstance(spec, dict):
        keys: dict[str, Any] = {}
        for key, value in spec.items():
            keys.update(dict.fromkeys(key.split(), value))
        return {
            "type": "object",
            "properties": {k.rstrip("!"): schema(v) for k, v in keys.items()},
            "required": [k.rstrip("!") for k in keys if k.endswith("!")],
            "additionalProperties": False,
        }
    text = str(spec)
    if text.startswith("int>="):
        return {"type": "integer", "minimum": int(text[5:])}
    how, _, value = text.partition(":")
    if how == "enum":
        return {"type": "string", "enum": value.split("|")}
    if how == "re":
        return {"type": "string", "pattern": value}
    return {"const": value} if how == "const" else copy.deepcopy(LEAVES[text])


META = schema({"name!": "str", "namespace": "str", "annotations": "strmap", "labels": "strmap"})
META["properties"]["name"].update(pattern=NAME, maxLength=253)
META["properties"]["labels"]["additionalProperties"].update(pattern=LABEL, maxLength=63)
SCHEMAS = {
    (api, kind): {
        **schema({"apiVersion!": f"const:{api}", "kind!": f"const:{kind}", "spec!": spec}),
    }
    for api, kinds in CRDS.items()
    for kind, spec in kinds.items()
}
for resource in SCHEMAS.values():
    resource["properties"]["metadata"] = META
    resource["required"].append("metadata")


def documents(text: str) -> list[Json]:
    return [d for d in yaml.safe_load_all(text) if d]


def kustomize(folder: Path) -> list[Json]:
    """What `kubectl kustomize folder` gives, for the features our overlays use (a fresh
    copy each time: the overlays' patches change what they are given)."""
    return list(json.loads(_kustomized(folder)))


@cache
def _kustomized(folder: Path) -> str:
    return json.dumps(_kustomize(folder))


def _kustomize(folder: Path) -> list[Json]:
    spec = yaml.safe_load((folder / "kustomization.yaml").read_text())
    taught = {"apiVersion", "kind", "namespace", "resources", "images", "patches"}
    assert set(spec) <= {*taught, "secretGenerator"}, f"{folder}: teach this test {set(spec)}"
    docs: list[Json] = []
    for entry in spec["resources"]:
        path = folder / entry
        docs += kustomize(path) if path.is_dir() else documents(path.read_text())
    for made in spec.get("secretGenerator", []):
        assert made["options"] == {"disableNameSuffixHash": True}, made
        data = dict(literal.split("=", 1) for literal in made["literals"])
        encoded = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
        meta = {"name": made["name"]}
        docs.append({"apiVersion": "v1", "kind": "Secret", "metadata": meta, "data": encoded})
        docs[-1]["type"] = "Opaque"
    for doc in docs:
        if "namespace" in spec:
            doc["metadata"]["namespace"] = spec["namespace"]
        for container in (
            doc.get("spec", {}).get("template", {}).get("spec", {}).get("containers", [])
        ):
            for image in spec.get("images", []):
                if container["image"].split(":")[0] == image["name"]:
                    container["image"] = f"{image.get('newName', image['name'])}:{image['newTag']}"
    for patch in spec.get("patches", []):
        hits = [d for d in docs if _targeted(d, patch["target"])]
        assert hits, f"{folder}: the patch for {patch['target']} matches nothing"
        for doc in hits:
            _json_patch(doc, yaml.safe_load(patch["patch"]))
    return docs


def _targeted(doc: Json, target: dict[str, str]) -> bool:
    group = doc["apiVersion"].rpartition("/")[0]
    found = {"group": group, "kind": doc["kind"], "name": doc["metadata"]["name"]}
    return all(found[key] == value for key, value in target.items())


def _json_patch(doc: Json, operations: list[Json]) -> None:
    for op in operations:
        *parents, last = op["path"].split("/")[1:]
        node: Any = doc
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        key: Any = int(last) if isinstance(node, list) else last
        if op["op"] == "remove":
            del node[key]
        elif op["op"] in ("add", "replace"):
            assert op["op"] == "add" or isinstance(node, list) or key in node, op
            node[key] = copy.deepcopy(op["value"])
        else:
            pytest.fail(f"unknown patch operation {op}")


def check(docs: list[Json]) -> None:
    """Every resource valid for its schema: Kubernetes' or its operator's CRD's."""
    for doc in docs:
        key = (doc["apiVersion"], doc["kind"])
        if key in SCHEMAS:
            jsonschema.validate(doc, SCHEMAS[key])
        else:
            for version in KUBERNETES:
                kubernetes_validate.validate(doc, version, strict=True)


def _comparable(doc: Json) -> Json:
    """Kustomize wraps a Secret's base64 at 76 columns; compare what it holds."""
    if doc["kind"] == "Secret":
        doc = {**doc, "data": {k: base64.b64decode(v).decode() for k, v in doc["data"].items()}}
    return doc


def _key(doc: Json) -> str:
    return json.dumps(doc, sort_keys=True)


def test_every_generated_resource_is_valid_for_kubernetes_or_its_operator() -> None:
    docs = kustomize(K8S / "base")
    check(docs)
    unchecked = {(d["apiVersion"], d["kind"]) for d in docs} - set(SCHEMAS)
    assert all("." not in api.partition("/")[0] for api, _ in unchecked), unchecked


@pytest.mark.parametrize("key", sorted(SCHEMAS))
def test_each_operator_kind_is_generated_and_its_schema_refuses_an_unknown_key(
    key: tuple[str, str],
) -> None:
    docs = [d for d in kustomize(K8S / "base") if (d["apiVersion"], d["kind"]) == key]
    assert docs, f"no {key[1]} generated"
    wrong = copy.deepcopy(docs[0])
    wrong["spec"]["unknownField"] = 1
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(wrong, SCHEMAS[key])


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_overlay_renders_valid_resources(overlay: str) -> None:
    docs = kustomize(K8S / "overlays" / overlay)
    check(docs)
    assert {d["metadata"].get("namespace") for d in docs} == {"mbs"}
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        return  # the checks above stand alone; kubectl only confirms our reading of Kustomize
    done = subprocess.run(
        [kubectl, "kustomize", str(K8S / "overlays" / overlay)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    theirs = sorted(map(_comparable, documents(done.stdout)), key=_key)
    assert theirs == sorted(map(_comparable, docs), key=_key)


def test_the_dev_secret_gives_prometheus_a_metrics_key() -> None:
    [secret] = [d for d in kustomize(K8S / "overlays" / "dev") if d["kind"] == "Secret"]
    plain = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    keys = Settings.model_validate({"api_keys": json.loads(plain["api-keys"])}).api_keys
    assert keys[plain["metrics-key"]].role == "metrics"
