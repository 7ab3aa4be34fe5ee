"""The repository's documentation is self-contained: every Markdown document a tracked file names
(README.md, docs/methods.md, ...) is itself tracked, and nothing points outside the repository
for its design notes."""
import re
import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
URL = re.compile(r"[a-z]+://\S+")
DOCUMENT = re.compile(r"[\w./-]*\b[\w-]+\.md\b")
WRITTEN = re.compile(r"[\"']([\w-]+\.md)[\"']")
OUTSIDE = re.compile(r"\.\./share[d]\b|/work/share[d]\b")  # [d]: so this line does not match itself


def tracked_text_files() -> dict[str, str]:
    names = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    files = {}
    for name in names.decode().split("\0"):
        path = ROOT / name
        if name and path.is_file():
            try:
                files[name] = path.read_text(encoding="utf-8")
            except UnicodeDecodeError:
                continue  # binary (images, archives)
    return files


def pipeline_outputs() -> tuple[str, ...]:
    """The outputs dvc.yaml's stages write (reports/report.md is one): documents that exist once run."""
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    outs = [o for stage in stages.values() for key in ("outs", "metrics", "plots") for o in stage.get(key, [])]
    return tuple(str(next(iter(o))) if isinstance(o, dict) else str(o) for o in outs)


def written_names(files: dict[str, str]) -> set[str]:
    """Markdown file names the code writes: quoted in a Python file (`tmp / "report.md"`)."""
    return {m for name, text in files.items() if name.endswith(".py") for m in WRITTEN.findall(text)}


def resolves(reference: str, citing: str, tracked: set[str], written: set[str]) -> bool:
    """A reference resolves to a tracked file: from the repository root, from the citing file's
    folder, or (a bare name such as README.md) by its file name; or to a pipeline output (a path
    under a dvc.yaml output, or a bare name the code writes)."""
    reference = reference[2:] if reference.startswith("./") else reference
    if reference.startswith(pipeline_outputs()):
        return True
    candidates = {reference, str(Path(citing).parent / reference)}
    if "/" not in reference:
        return reference in written or any(Path(t).name == reference for t in tracked)
    return bool(candidates & tracked) or any(t.endswith("/" + reference) for t in tracked)


def test_every_cited_document_is_in_the_repository():
    files = tracked_text_files()
    tracked, written = set(files), written_names(files)
    missing = []
    for name, text in files.items():
        for number, line in enumerate(text.splitlines(), start=1):
            line = URL.sub("", line)
            missing += [f"{name}:{number}: {ref}" for ref in DOCUMENT.findall(line) if not resolves(ref, name, tracked, written)]
            missing += [f"{name}:{number}: {m}" for m in OUTSIDE.findall(line)]
    assert not missing, "documents cited but not in the repository:\n" + "\n".join(missing)


def test_methods_reference_exists_and_covers_every_method():
    from pipeline.training.methods import STAGE1
    from pipeline.training.rebalance import STAGE2

    text = (ROOT / "docs" / "methods.md").read_text()
    for name in (*STAGE1.names(), *STAGE2.names()):
        assert f"`{name}`" in text, name
