"""cluster/: every YAML parses and carries what a GPU cluster needs; one Ray version everywhere;
the README's commands are the ones the cluster test runs."""
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
CLUSTER = ROOT / "cluster"


def ray_pin() -> str:
    """'2.60' from pyproject's ray[...]>=2.60,<2.61."""
    return re.search(r'"ray\[[^\]]*\]>=([\d.]+),', (ROOT / "pyproject.toml").read_text()).group(1)


def documents() -> dict[str, list[dict]]:
    return {str(p.relative_to(CLUSTER)): list(yaml.safe_load_all(p.read_text())) for p in sorted(CLUSTER.rglob("*.yaml"))}


def images(node) -> list[str]:
    if isinstance(node, dict):
        return [v for k, v in node.items() if k == "image" and isinstance(v, str)] + [
            i for v in node.values() for i in images(v)]
    return [i for v in node for i in images(v)] if isinstance(node, list) else []


def test_every_image_and_version_is_the_pinned_ray():
    pin = ray_pin()
    docs = documents()
    assert set(docs) == {"ray-cluster.yaml", "runtime_env.yaml", "kuberay/raycluster.yaml",
                         "kuberay/rayjob-train.yaml", "kuberay/rayjob-sweep.yaml"}
    found = [image for doc in docs.values() for image in images(doc)]
    assert found and all(re.search(rf":{re.escape(pin)}\.\d+(-py311)?-gpu$", i) for i in found), found
    versions = [d["spec"].get("rayVersion") or d["spec"]["rayClusterSpec"]["rayVersion"]
                for path, ds in docs.items() if path.startswith("kuberay/") for d in ds if d["kind"] != "PersistentVolumeClaim"]
    assert len(versions) == 3 and all(v.startswith(pin + ".") for v in versions)
    dockerfile = (CLUSTER / "Dockerfile").read_text()
    assert re.search(rf"^FROM rayproject/ray:{re.escape(pin)}\.\d+-py311-gpu$", dockerfile, re.M)
    assert "pip install" in dockerfile and "-e ." in dockerfile


def test_launcher_config_cpu_head_autoscaling_gpu_workers_and_project_install():
    config = yaml.safe_load((CLUSTER / "ray-cluster.yaml").read_text())
    nodes = config["available_node_types"]
    head = nodes[config["head_node_type"]]
    assert head["resources"].get("GPU", 0) == 0 and head["resources"]["CPU"] == 0
    gpu = [n for name, n in nodes.items() if name != config["head_node_type"]]
    assert gpu and all(n["resources"]["GPU"] >= 1 and n["min_workers"] < n["max_workers"] for n in gpu)
    assert config["provider"]["type"] and config["max_workers"] >= max(n["max_workers"] for n in gpu)
    assert any("pip install -e /home/ray/lt-pipeline" in c for c in config["setup_commands"])
    assert all("RAY_AUTH_MODE=token" in " ".join(config[k]) for k in ("head_start_ray_commands",
                                                                       "worker_start_ray_commands"))
    assert "auth_token" in str(config["file_mounts"])  # the token is mounted from the user's home, not committed


def cluster_specs():
    for path, docs in documents().items():
        for doc in docs:
            if doc.get("kind") == "RayCluster":
                yield path, doc, doc["spec"]
            elif doc.get("kind") == "RayJob":
                yield path, doc, doc["spec"]["rayClusterSpec"]


def test_kuberay_manifests_gpu_groups_shm_shared_storage():
    specs = list(cluster_specs())
    assert {doc["kind"] for _, doc, _ in specs} == {"RayCluster", "RayJob"} and len(specs) == 3
    for path, doc, spec in specs:
        assert doc["apiVersion"] == "ray.io/v1", path
        pods = [spec["headGroupSpec"]["template"]["spec"]] + [g["template"]["spec"] for g in spec["workerGroupSpecs"]]
        for pod in pods:
            volumes = {v["name"]: v for v in pod["volumes"]}
            mounts = {m["mountPath"]: m["name"] for c in pod["containers"] for m in c["volumeMounts"]}
            assert volumes[mounts["/dev/shm"]]["emptyDir"]["medium"] == "Memory", path
            assert volumes[mounts["/mnt/shared"]]["persistentVolumeClaim"]["claimName"] == "lt-shared", path
            env = {e["name"]: e for c in pod["containers"] for e in c["env"]}
            assert env["RAY_AUTH_MODE"]["value"] == "token" and "secretKeyRef" in env["RAY_AUTH_TOKEN"]["valueFrom"]
        for group in spec["workerGroupSpecs"]:
            limits = group["template"]["spec"]["containers"][0]["resources"]["limits"]
            assert int(limits["nvidia.com/gpu"]) >= 1 and group["maxReplicas"] > group["minReplicas"], path
    claim = [d for d in documents()["kuberay/raycluster.yaml"] if d["kind"] == "PersistentVolumeClaim"]
    assert claim[0]["spec"]["accessModes"] == ["ReadWriteMany"]


def test_rayjobs_shut_down_expire_and_run_training_and_the_sweep():
    jobs = {p: d for p, ds in documents().items() for d in ds if d.get("kind") == "RayJob"}
    for path, job in jobs.items():
        spec = job["spec"]
        assert spec["shutdownAfterJobFinishes"] is True, path
        assert spec["ttlSecondsAfterFinished"] > 0 and spec["activeDeadlineSeconds"] > 0, path
    assert "-- ltp stage1 " in jobs["kuberay/rayjob-train.yaml"]["spec"]["entrypoint"]
    assert jobs["kuberay/rayjob-sweep.yaml"]["spec"]["entrypoint"].rstrip().endswith("-- ltp tune")


def test_the_readme_one_machine_recipe_is_what_the_cluster_test_runs():
    from test_cluster_submit import readme_one_machine

    env, (head, second) = readme_one_machine()
    assert env == {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}  # 127.0.0.1 stays the nodes' address
    assert head[:3] == ["ray", "start", "--head"] and second[:3] == ["python", "tests/raynode.py", "start"]
    assert all("--node-ip-address=127.0.0.1" in command for command in (head, second))
    assert "--dashboard-host=127.0.0.1" in head and "--address=127.0.0.1:6379" in second
    for flag in ("--dashboard-agent-listen-port=", "--runtime-env-agent-port=", "--metrics-export-port="):
        ports = [next(w for w in command if w.startswith(flag)) for command in (head, second)]
        assert len(set(ports)) == 2, flag  # two nodes on one machine cannot share a port
    readme = (CLUSTER / "README.md").read_text()
    assert "ltp submit stage1 --address" in readme and "RAY_AUTH_TOKEN" in readme


def test_a_submitted_stage_carries_every_stage_output_it_reads():
    from stages.dvcfile import stage_spec

    # runs/tune/best_params.yaml lies inside the tune stage's output runs/tune: data, not code (and so
    # does runs/params/STAGE.json, the check stage's record of the values the stage reads)
    assert stage_spec(ROOT / "dvc.yaml", "stage1").data_deps == (
        "runs/params/stage1.json", "data/split", "runs/tune/best_params.yaml")
    assert stage_spec(ROOT / "dvc.yaml", "stage2").data_deps == (
        "runs/params/stage2.json", "data/split", "runs/stage1", "runs/tune/best_params.yaml")
