"""Kubernetes actions (official ``kubernetes`` client): what the seeds' runbooks do with kubectl.

Read-only: ``get_deployment``, ``list_pods``, ``pod_logs``, ``events``, ``wait_rollout``,
``list_nodes``, ``get_pvc``, ``get_storageclass``, ``rollout_history``, ``helm_history``,
``exec_readonly``.
Destructive (each with a ``describe`` that reads the target and states current -> new):
``scale``, ``rollout_restart``, ``annotate``, ``delete_pod``, ``cordon``, ``uncordon``, ``drain``,
``apply_pdb``, ``exec``, ``patch_pvc``, ``rollout_undo``.

Only this module declares actions (the registry loads it): each is its contract and user docs. The
work is in ``workloads``, ``annotating``, ``pods``, ``nodes``, ``pdb``, ``exec``, ``volumes`` and
``history``; params and results in ``models`` and ``state_models``; ``client`` alone imports the
kubernetes client (factory from KUBECONFIG or in-cluster config; every call bounded by the step's
remaining time, API errors mapped to one-line ActionErrors naming kubernetes).
"""

from __future__ import annotations

from runbook.actions.context import ActionContext
from runbook.actions.kubernetes import annotating, history, nodes, pdb, pods, volumes, workloads
from runbook.actions.kubernetes import exec as kube_exec
from runbook.actions.kubernetes.models import (
    AnnotateParams,
    AnnotateResult,
    ApplyPdbParams,
    ApplyPdbResult,
    DeletePodParams,
    DeletePodResult,
    DeploymentResult,
    DrainParams,
    DrainResult,
    EventsParams,
    EventsResult,
    ExecParams,
    ExecResultModel,
    ListPodsParams,
    ListPodsResult,
    NodeParams,
    NodeResult,
    PodLogsParams,
    PodLogsResult,
    RestartResult,
    ScaleParams,
    ScaleResult,
    WaitRolloutParams,
    WaitRolloutResult,
    WorkloadParams,
)
from runbook.actions.kubernetes.state_models import (
    ExecReadonlyParams,
    HelmHistoryParams,
    HelmHistoryResult,
    HistoryParams,
    HistoryResult,
    ListNodesParams,
    ListNodesResult,
    PatchPvcParams,
    PatchPvcResult,
    PvcParams,
    PvcResult,
    StorageClassParams,
    StorageClassResult,
    UndoParams,
    UndoResult,
)
from runbook.actions.registry import action


@action(
    "kubernetes.get_deployment", summary="Replicas (desired/ready/available/updated), conditions, annotations"
)
def get_deployment(ctx: ActionContext, params: WorkloadParams) -> DeploymentResult:
    """Read a deployment (or statefulset with ``kind: statefulset``): replica counts, rollout state,
    conditions and annotations (e.g. a maintenance flag). ``kubectl get deploy NAME -o yaml``."""
    return workloads.get_deployment(ctx, params)


@action(
    "kubernetes.list_pods", summary="Pods with phase, readiness, restarts, OOMKilled/CrashLoopBackOff counts"
)
def list_pods(ctx: ActionContext, params: ListPodsParams) -> ListPodsResult:
    """List pods by label selector (and node): phase, readiness, restarts, the waiting reason
    (CrashLoopBackOff, ImagePullBackOff...) and the last termination reason (OOMKilled, Error...),
    with counts a ``when:`` can test (``steps.pods.crash_looping > 0``). ``kubectl get pods -l ...``."""
    return pods.list_pods(ctx, params)


@action("kubernetes.pod_logs", summary="Tail (and grep) a pod's logs, secrets redacted")
def pod_logs(ctx: ActionContext, params: PodLogsParams) -> PodLogsResult:
    """Last ``tail_lines`` lines of one pod, or of up to ``max_pods`` pods matching a selector
    (lines prefixed with the pod name), optionally only lines matching ``grep`` and optionally of the
    previous (crashed) container. Every line is redacted before grep and before it leaves the action,
    so neither the result nor the grep can reveal a password. ``kubectl logs --tail=N | grep``."""
    return pods.pod_logs(ctx, params)


@action("kubernetes.events", summary="Recent events of a namespace or object, warnings first-class")
def events(ctx: ActionContext, params: EventsParams) -> EventsResult:
    """Events newest first, filtered by involved object (kind/name), warnings only and age; with a
    count per reason (BackOff, OOMKilling, FailedScheduling...). ``kubectl get events``."""
    return pods.events(ctx, params)


@action("kubernetes.wait_rollout", summary="Wait until a rollout completes (updated == ready == desired)")
def wait_rollout(ctx: ActionContext, params: WaitRolloutParams) -> WaitRolloutResult:
    """Poll until the controller has observed the latest generation and every replica is updated,
    ready and available; fails on timeout or when the deployment reports ProgressDeadlineExceeded.
    Transient API errors while polling are tolerated until the deadline (an API blip is not a failed
    rollout). ``kubectl rollout status``."""
    return workloads.wait_rollout(ctx, params)


@action(
    "kubernetes.scale",
    summary="Scale a deployment/statefulset within max_replicas and the DB budget",
    destructive=True,
    describe=workloads.describe_scale,
)
def scale(ctx: ActionContext, params: ScaleParams) -> ScaleResult:
    """Set the replica count through the scale subresource. Guardrails: scaling up beyond
    ``max_replicas`` is refused; with ``use_database`` the target must also fit the PostgreSQL
    connection budget floor((max_connections - db_headroom) / db_pool_size) (seed: "don't exceed DB
    connection budgets when scaling consumers"). Scaling down is always allowed, even from above a
    bound, because it only relieves pressure. If the budget cannot be read the action refuses."""
    return workloads.scale(ctx, params)


@action(
    "kubernetes.rollout_restart",
    summary="Rolling restart of a deployment/statefulset",
    destructive=True,
    describe=workloads.describe_rollout_restart,
)
def rollout_restart(ctx: ActionContext, params: WorkloadParams) -> RestartResult:
    """``kubectl rollout restart``: patch ``spec.template.metadata.annotations`` with
    ``kubectl.kubernetes.io/restartedAt`` so the controller replaces pods under its rollout strategy
    (and PDBs). Refuses a paused deployment (the restart would silently not happen). Follow with
    ``kubernetes.wait_rollout``."""
    return workloads.rollout_restart(ctx, params)


@action(
    "kubernetes.annotate",
    summary="Set or remove annotations (e.g. maintenance mode)",
    destructive=True,
    describe=annotating.describe_annotate,
)
def annotate(ctx: ActionContext, params: AnnotateParams) -> AnnotateResult:
    """``kubectl annotate``: set annotations on a deployment, statefulset, node or pod; a null value
    removes the key (``kubectl annotate ... maintenance-``). With ``overwrite: false`` an annotation
    that already has a different value is left alone and the step fails (someone else owns it)."""
    return annotating.annotate(ctx, params)


@action(
    "kubernetes.delete_pod",
    summary="Delete a pod so its controller recreates it",
    destructive=True,
    describe=pods.describe_delete_pod,
)
def delete_pod(ctx: ActionContext, params: DeletePodParams) -> DeletePodResult:
    """``kubectl delete pod``: the usual fix for one wedged consumer. Refuses a pod without a
    controlling owner unless ``allow_unmanaged`` (it would be gone for good)."""
    return pods.delete_pod(ctx, params)


@action(
    "kubernetes.cordon", summary="Mark a node unschedulable", destructive=True, describe=nodes.describe_cordon
)
def cordon(ctx: ActionContext, params: NodeParams) -> NodeResult:
    """``kubectl cordon``: no new pods land on the node; running pods stay."""
    return nodes.set_unschedulable(ctx, params.node, True)


@action(
    "kubernetes.uncordon",
    summary="Mark a node schedulable again",
    destructive=True,
    describe=nodes.describe_uncordon,
)
def uncordon(ctx: ActionContext, params: NodeParams) -> NodeResult:
    """``kubectl uncordon``: end of node maintenance."""
    return nodes.set_unschedulable(ctx, params.node, False)


@action(
    "kubernetes.drain",
    summary="Cordon a node and evict its pods, respecting PodDisruptionBudgets",
    destructive=True,
    describe=nodes.describe_drain,
)
def drain(ctx: ActionContext, params: DrainParams) -> DrainResult:
    """``kubectl drain --ignore-daemonsets``: cordon, then evict every pod through the Eviction API so
    PodDisruptionBudgets decide. A 429 (budget exhausted) is retried every ``retry_interval`` until
    ``timeout_seconds``; pods still blocked then are reported (the step fails unless
    ``fail_on_blocked: false``) and are never deleted by force. DaemonSet and static mirror pods are
    skipped; unmanaged or emptyDir pods make the drain refuse before anything changes unless allowed.
    The node stays cordoned afterwards: uncordon is a separate, deliberate step."""
    return nodes.drain(ctx, params)


@action(
    "kubernetes.apply_pdb",
    summary="Create or replace a PodDisruptionBudget",
    destructive=True,
    describe=pdb.describe_apply_pdb,
)
def apply_pdb(ctx: ActionContext, params: ApplyPdbParams) -> ApplyPdbResult:
    """Seed maintenance step "create PDB to limit disruption": create the PodDisruptionBudget, or
    replace the existing one (optimistic concurrency on resourceVersion: a concurrent edit fails the
    step instead of being overwritten). The namespace must exist."""
    return pdb.apply_pdb(ctx, params)


@action(
    "kubernetes.exec",
    summary="Run a command the playbook allows (argv, no shell) in a pod container",
    destructive=True,
    describe=kube_exec.describe_exec,
)
def exec_(ctx: ActionContext, params: ExecParams) -> ExecResultModel:
    """``kubectl exec POD -- CMD ARGS``: e.g. ``rabbitmqctl forget_cluster_node rabbit@failed``. The
    command runs only if the step's literal ``allow`` list admits it (e.g. ``allow: ["rabbitmqctl
    forget_cluster_node *"]``); anything else is refused before the pod is contacted. There is no list
    of forbidden programs: ``python3 -c``, ``awk 'BEGIN{system(...)}'`` or ``rabbitmqctl eval`` run only
    where a playbook explicitly allows them. The argv is sent as is, never through a shell. Output is
    capped and redacted; a non-zero exit fails the step unless ``fail_on_nonzero: false``. Uses the
    exec websocket (channel protocol v4/v5)."""
    return kube_exec.run(ctx, params)


@action(
    "kubernetes.exec_readonly",
    summary="Run a whole command the playbook lists as read-only (e.g. a health check) in a pod container",
)
def exec_readonly(ctx: ActionContext, params: ExecReadonlyParams) -> ExecResultModel:
    """``kubectl exec POD -- CMD``, without an approval, for the commands a playbook declares read-only:
    ``goqueue-admin health``, ``df -h /data``, ``rabbitmq-diagnostics check_local_alarms``. Same model as
    ``kubernetes.exec`` (literal ``allow`` list in the reviewed playbook, argv never through a shell,
    output capped and redacted) with one more rule: every ``allow`` entry is a whole command, word for
    word (no ``*``, no ``...``), so the reviewers read exactly what may run without a human's click.
    Anything else (a subcommand that changes state, a templated argument) needs ``kubernetes.exec``
    behind an approval."""
    return kube_exec.run(ctx, params)


@action("kubernetes.list_nodes", summary="Nodes: Ready, memory/disk/PID pressure, cordoned, taints, pods")
def list_nodes(ctx: ActionContext, params: ListNodesParams) -> ListNodesResult:
    """``kubectl get nodes`` plus what ``kubectl describe node`` shows an SRE first: the pressure
    conditions (MemoryPressure, DiskPressure, PIDPressure), cordon, taints and the pods on each node,
    with lists a ``when:`` can test (``steps.nodes.not_ready``, ``steps.nodes.pressure``)."""
    return volumes.list_nodes(ctx, params)


@action("kubernetes.get_pvc", summary="A volume claim: capacity vs request, class, resize in progress")
def get_pvc(ctx: ActionContext, params: PvcParams) -> PvcResult:
    """``kubectl get pvc NAME``: phase, requested size and actual capacity (in bytes too), the
    StorageClass and whether it allows expansion, and whether a resize is in progress (``Resizing`` /
    ``FileSystemResizePending`` conditions)."""
    return volumes.get_pvc(ctx, params)


@action("kubernetes.get_storageclass", summary="A StorageClass: provisioner, whether volumes can expand")
def get_storageclass(ctx: ActionContext, params: StorageClassParams) -> StorageClassResult:
    """``kubectl get storageclass NAME``: provisioner, reclaim policy, binding mode, default class, and
    ``allowVolumeExpansion`` (a PVC of a class without it cannot grow)."""
    return volumes.get_storageclass(ctx, params)


@action(
    "kubernetes.patch_pvc",
    summary="Expand a volume claim (only larger, within max_size, only where its class allows it)",
    destructive=True,
    describe=volumes.describe_patch_pvc,
)
def patch_pvc(ctx: ActionContext, params: PatchPvcParams) -> PatchPvcResult:
    """``kubectl patch pvc NAME -p '{"spec":{"resources":{"requests":{"storage":"SIZE"}}}}'``. Refused
    before anything is sent when SIZE is not larger than the current request (claims never shrink),
    above ``max_size``, or when the claim's StorageClass does not set ``allowVolumeExpansion: true``.
    The resize finishes asynchronously (``kubernetes.get_pvc`` shows the capacity catching up)."""
    return volumes.patch_pvc(ctx, params)


@action(
    "kubernetes.rollout_history",
    summary="Revision history of a statefulset (ControllerRevisions) or deployment (ReplicaSets)",
)
def rollout_history(ctx: ActionContext, params: HistoryParams) -> HistoryResult:
    """``kubectl rollout history``: every revision with its images and change cause, which one is
    current (a StatefulSet's ``status.updateRevision``), the previous revision number, and the rollout
    state (ready/updated replicas) - what a rollback step needs to choose its target."""
    return history.rollout_history(ctx, params)


@action(
    "kubernetes.rollout_undo",
    summary="Roll a statefulset or deployment back to a chosen revision",
    destructive=True,
    describe=history.describe_rollout_undo,
)
def rollout_undo(ctx: ActionContext, params: UndoParams) -> UndoResult:
    """``kubectl rollout undo KIND/NAME --to-revision=N`` (0: the revision before the current one):
    the StatefulSet gets its ControllerRevision's template back (strategic-merge patch with ``$patch:
    replace``), the Deployment its ReplicaSet's template (JSON patch). A revision that does not exist
    is refused, naming those that do; rolling back to the current revision changes nothing. Pods are
    replaced by the controller under the update strategy: follow with ``kubernetes.wait_rollout``."""
    return history.rollout_undo(ctx, params)


@action("kubernetes.helm_history", summary="Helm release history from its Secrets (no helm binary)")
def helm_history(ctx: ActionContext, params: HelmHistoryParams) -> HelmHistoryResult:
    """``helm history RELEASE``: decodes Helm 3's ``sh.helm.release.v1.RELEASE.vN`` Secrets (base64,
    gzip, JSON) and lists each revision's status, chart, chart and app version and description, the
    deployed revision and the last good one before the newest. Values and manifests are never read
    into the result (they may hold secrets). Needs ``get``/``list`` on Secrets in that namespace."""
    return history.helm_history(ctx, params)
