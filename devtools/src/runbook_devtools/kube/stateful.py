"""What a broker's StatefulSet leaves in the API besides pods: ControllerRevisions (its rollout history),
PersistentVolumeClaims and their StorageClasses (volume expansion), and Helm's release Secrets.

As the API reference and the controllers document them:

- each pod template a StatefulSet has had is a ``ControllerRevision`` named ``NAME-HASH`` (labelled with
  the StatefulSet's selector and ``controller.kubernetes.io/hash``, controlled by it) whose ``data`` is
  the strategic-merge patch ``{"spec": {"template": {..., "$patch": "replace"}}}`` and whose
  ``revision`` is a number that only grows; going back to an old template gives that revision the next
  number. ``status.currentRevision``/``updateRevision`` name it. ``kubectl rollout history/undo sts``
  read and apply exactly this.
- a PVC's ``spec.resources.requests.storage`` may only grow (422 otherwise), and only when its
  StorageClass has ``allowVolumeExpansion: true`` (403 otherwise, the admission plugin's words); the
  resize then completes after ``replace_delay`` (``status.capacity`` follows, the ``Resizing``
  condition goes away).
- Helm 3 stores release N of RELEASE as the Secret ``sh.helm.release.v1.RELEASE.vN`` (type
  ``helm.sh/release.v1``, labels ``owner=helm``, ``name``, ``status``, ``version``) whose ``release``
  value is base64(gzip(JSON)) - base64 again in the Secret's ``data``.
"""

from __future__ import annotations

import base64
import copy
import gzip
import json
import re
from typing import Any

from .base import ApiError, now_iso
from .seeding import Seeding

HASH_LABEL = "controller.kubernetes.io/hash"
_UNITS = {"": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15}
_UNITS.update({"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50})


def quantity_bytes(text: str) -> int:
    """A storage quantity (``10Gi``, ``500M``, ``1073741824``) in bytes; 422 for anything else."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([KMGTP]i|[kMGTP]?)", str(text).strip())
    if not m:
        raise ApiError(422, "Invalid", f"quantities must match the regular expression: {text!r}")
    return int(float(m.group(1)) * _UNITS[m.group(2)])


def _requested(pvc: dict[str, Any]) -> str:
    return str(((pvc.get("spec") or {}).get("resources") or {}).get("requests", {}).get("storage", "0"))


class Stateful(Seeding):
    """Seeding helpers and API semantics for revisions, volume claims, storage classes, Helm secrets."""

    # ---------------------------------------------------------------------------- controller revisions

    def _record_revision(self, sts: dict[str, Any], revision: str) -> dict[str, Any]:
        """The StatefulSet's ControllerRevision for this template (created, or renumbered when an
        older template comes back); returns it."""
        ns, name = sts["metadata"]["namespace"], sts["metadata"]["name"]
        uid = sts["metadata"]["uid"]
        owned = [
            cr
            for (cns, _), cr in self.objects["controllerrevisions"].items()
            if cns == ns and any(o.get("uid") == uid for o in cr["metadata"].get("ownerReferences") or [])
        ]
        top = max((int(cr.get("revision", 0)) for cr in owned), default=0)
        cr_name = f"{name}-{revision}"
        cr = self.objects["controllerrevisions"].get((ns, cr_name))
        if cr is None:
            template = copy.deepcopy(sts["spec"]["template"])
            template["$patch"] = "replace"
            labels = dict((sts["spec"].get("selector") or {}).get("matchLabels") or {})
            labels[HASH_LABEL] = revision
            meta = self._meta(cr_name, ns, labels)
            meta["ownerReferences"] = [
                {
                    "apiVersion": "apps/v1",
                    "kind": "StatefulSet",
                    "name": name,
                    "uid": uid,
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ]
            cause = (sts["metadata"].get("annotations") or {}).get("kubernetes.io/change-cause")
            if cause:
                meta["annotations"]["kubernetes.io/change-cause"] = cause
            body = {"metadata": meta, "data": {"spec": {"template": template}}, "revision": top + 1}
            cr = self.put("controllerrevisions", body)
        elif int(cr.get("revision", 0)) < top:
            old = copy.deepcopy(cr)
            cr["revision"] = top + 1
            self.touch("controllerrevisions", cr, old)
        return cr

    def _collect_revisions(self, ns: str, uid: str) -> None:
        for (cns, cname), cr in list(self.objects["controllerrevisions"].items()):
            if cns == ns and any(o.get("uid") == uid for o in cr["metadata"].get("ownerReferences") or []):
                self.remove("controllerrevisions", cns, cname)

    # ---------------------------------------------------------------------------- storage

    def add_storageclass(
        self,
        name: str,
        *,
        provisioner: str = "ebs.csi.aws.com",
        allow_volume_expansion: bool = True,
        default: bool = False,
    ) -> dict[str, Any]:
        meta = self._meta(name, None)
        if default:
            meta["annotations"]["storageclass.kubernetes.io/is-default-class"] = "true"
        with self.lock:
            return self.put(
                "storageclasses",
                {
                    "metadata": meta,
                    "provisioner": provisioner,
                    "reclaimPolicy": "Delete",
                    "volumeBindingMode": "WaitForFirstConsumer",
                    "allowVolumeExpansion": allow_volume_expansion,
                },
            )

    def add_pvc(
        self,
        namespace: str,
        name: str,
        *,
        size: str = "10Gi",
        storage_class: str | None = "standard",
        labels: dict[str, str] | None = None,
        access_modes: list[str] | None = None,
    ) -> dict[str, Any]:
        """A bound claim whose capacity equals its request."""
        modes = list(access_modes or ["ReadWriteOnce"])
        with self.lock:
            self._ensure_namespace(namespace)
            meta = self._meta(name, namespace, labels)
            meta["annotations"]["pv.kubernetes.io/bind-completed"] = "yes"
            spec: dict[str, Any] = {
                "accessModes": modes,
                "resources": {"requests": {"storage": size}},
                "volumeMode": "Filesystem",
                "volumeName": f"pvc-{meta['uid']}",
            }
            if storage_class is not None:
                spec["storageClassName"] = storage_class
            status = {"phase": "Bound", "accessModes": modes, "capacity": {"storage": size}}
            return self.put("persistentvolumeclaims", {"metadata": meta, "spec": spec, "status": status})

    def admit_update(self, plural: str, ns: str, name: str, old: dict[str, Any], new: dict[str, Any]) -> None:
        """Admission for updates (PVC resize rules); raises :class:`ApiError` to refuse."""
        if plural != "persistentvolumeclaims":
            return
        before, after = _requested(old), _requested(new)
        if before == after:
            return
        if quantity_bytes(after) < quantity_bytes(before):
            raise ApiError(
                422,
                "Invalid",
                f'PersistentVolumeClaim "{name}" is invalid: spec.resources.requests.storage: Forbidden: '
                "field can not be less than previous value",
                {"name": name, "kind": "PersistentVolumeClaim"},
            )
        sc_name = (old.get("spec") or {}).get("storageClassName")
        sc = self.objects["storageclasses"].get(("", sc_name or ""))
        if sc is None or not sc.get("allowVolumeExpansion"):
            raise ApiError(
                403,
                "Forbidden",
                f'persistentvolumeclaims "{name}" is forbidden: only dynamically provisioned pvc can be '
                "resized and the storageclass that provisions the pvc must support resize",
                {"name": name, "kind": "persistentvolumeclaims"},
            )
        new["status"] = copy.deepcopy(old.get("status") or {})
        new["status"]["conditions"] = [
            {"type": "Resizing", "status": "True", "lastTransitionTime": now_iso(), "message": ""}
        ]
        if self.replace_delay is not None:
            self._schedule(("persistentvolumeclaims", ns, name), self.replace_delay)

    def _finish_resize(self, ns: str, name: str) -> None:
        pvc = self.objects["persistentvolumeclaims"].get((ns, name))
        if pvc is None:
            return
        old = copy.deepcopy(pvc)
        status = pvc.setdefault("status", {})
        status.setdefault("capacity", {})["storage"] = _requested(pvc)
        status.pop("conditions", None)
        self.touch("persistentvolumeclaims", pvc, old)

    def _schedule(self, key: tuple[str, str, str], delay: float | None) -> None:
        raise NotImplementedError  # the controller mixin provides it

    # ---------------------------------------------------------------------------- helm

    def add_helm_release(
        self,
        namespace: str,
        release: str,
        version: int,
        *,
        status: str = "deployed",
        chart: str = "goqueue",
        chart_version: str = "1.0.0",
        app_version: str = "1.0.0",
        description: str = "Install complete",
        values: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Helm 3's release Secret ``sh.helm.release.v1.RELEASE.vVERSION`` as ``helm upgrade`` writes it."""
        doc = {
            "name": release,
            "namespace": namespace,
            "version": version,
            "info": {
                "first_deployed": now_iso(-3600),
                "last_deployed": now_iso(),
                "deleted": "",
                "description": description,
                "status": status,
            },
            "chart": {
                "metadata": {"name": chart, "version": chart_version, "appVersion": app_version},
                "values": {},
            },
            "config": dict(values or {}),
            "manifest": f"---\n# Source: {chart}/templates/statefulset.yaml\nkind: StatefulSet\n",
        }
        helm_value = base64.b64encode(gzip.compress(json.dumps(doc).encode())).decode()
        labels = {"owner": "helm", "name": release, "status": status, "version": str(version)}
        with self.lock:
            self._ensure_namespace(namespace)
            meta = self._meta(f"sh.helm.release.v1.{release}.v{version}", namespace, labels)
            return self.put(
                "secrets",
                {
                    "metadata": meta,
                    "type": "helm.sh/release.v1",
                    "data": {"release": base64.b64encode(helm_value.encode()).decode()},
                },
            )

    def seed_goqueue(
        self, namespace: str = "goqueue", *, replicas: int = 3, image: str = "goqueue:1.4.0"
    ) -> None:
        """Seed 001's GoQueue: a StatefulSet ``goqueue`` (pods goqueue-0..N-1, container ``goqueue``),
        an expandable default StorageClass ``standard`` and a fixed one ``local``, a claim
        ``goqueue-data-goqueue-I`` (10Gi) per pod, and Helm release ``goqueue`` revision 1 (deployed)."""
        with self.lock:
            if ("", "standard") not in self.objects["storageclasses"]:
                self.add_storageclass("standard", default=True)
                self.add_storageclass(
                    "local", provisioner="kubernetes.io/no-provisioner", allow_volume_expansion=False
                )
            self.add_statefulset(
                namespace,
                "goqueue",
                replicas=replicas,
                image=image,
                labels={"app.kubernetes.io/name": "goqueue"},
            )
            for i in range(replicas):
                self.add_pvc(
                    namespace,
                    f"goqueue-data-goqueue-{i}",
                    size="10Gi",
                    labels={"app.kubernetes.io/name": "goqueue"},
                )
            self.add_helm_release(namespace, "goqueue", 1, app_version=image.rsplit(":", 1)[-1])
