#!/usr/bin/env python3
"""Static checks of deploy/: no Docker, no cluster, no zkfarm binary.

Run through scripts/validate_deploy.sh, which installs what this needs
(PyYAML, kubernetes-validate, check-jsonschema) into .deploy-check/.

What is checked, one line per check:
- every YAML file under deploy/ parses, and the dashboard's JSON;
- compose.yaml against the compose spec, and what the spec cannot see:
  references between services, volumes and files, health checks, stop
  grace periods, the GPU profile, the coordinators and their job store, the
  shared SRS;
- the Kubernetes manifests against the Kubernetes schemas (strict), and
  resources, probes, security contexts, grace periods, references,
  selectors, the GPU worker, the coordinators and their job store (one on
  SQLite, or several on one PostgreSQL), the shared SRS;
- every `zkfarm` command line in compose.yaml and the manifests against the
  CLI's own definition (cli/src/*.rs): subcommands, flags, their values,
  and the ZKFARM_* variables set beside them;
- the Prometheus configurations scrape every metrics address;
- the Grafana provisioning and dashboard: data source, targets, and every
  metric and label of its PromQL among those zkfarm records (read from the
  Rust sources), so that renaming a metric fails here;
- the Dockerfiles build the `zkfarm` binary and run it as configured.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import subprocess
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "compose.yaml"
K8S = DEPLOY / "k8s"
PROMETHEUS = DEPLOY / "prometheus" / "prometheus.yml"
GRAFANA = DEPLOY / "grafana"
DOCKERFILES = {"zkfarm": DEPLOY / "docker" / "Dockerfile", "zkfarm-cuda": DEPLOY / "docker" / "Dockerfile.cuda"}

# Flags that deploy/ uses ahead of the CLI: they are being added to the Rust
# code now. Each entry is accepted while the CLI lacks it; once it lands the
# check says so and the entry should be removed.
# The worker's --drain-timeout default, in seconds.
DEFAULT_DRAIN_TIMEOUT = 25
# Kubernetes' default terminationGracePeriodSeconds.
K8S_DEFAULT_GRACE = 30
# Kubernetes releases the manifests are validated against: one that clusters
# commonly run, and the newest one kubernetes-validate carries.
K8S_VERSIONS = ["1.33.0", "latest"]
# Labels that Prometheus adds to every series it scrapes.
TARGET_LABELS = {"instance", "job"}
HEALTH_PATHS = {"readiness": "/readyz", "liveness": "/healthz"}


# ---------------------------------------------------------------- reporting


class Report:
    def __init__(self) -> None:
        self.failed = 0
        self.notes: list[str] = []

    def run(self, name: str, fn, *args) -> None:
        try:
            problems, detail = fn(*args)
        except Exception as e:  # a crash in a check is a failure of that check
            problems, detail = [f"the check crashed: {e!r}"], ""
            traceback.print_exc(file=sys.stderr)
        if problems:
            self.failed += 1
            print(f"FAIL  {name}: {problems[0]}")
            for p in problems[1:]:
                print(f"        - {p}")
        else:
            print(f"ok    {name}: {detail}")
        sys.stdout.flush()


def rel(p: Path) -> str:
    try:
        return str(p.relative_to(ROOT))
    except ValueError:
        return str(p)


def load_yaml_docs(path: Path) -> list:
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


# ------------------------------------------------------------- Rust sources


def strip_rust_comments(text: str) -> str:
    """Removes // and /* */ comments, keeping string and char literals."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
            continue
        if text.startswith("/*", i):
            j = text.find("*/", i + 2)
            i = n if j < 0 else j + 2
            out.append(" ")
            continue
        if c == "r" and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")):
            m = re.match(r'r(#*)"', text[i:])
            if m:
                end = text.find('"' + m.group(1), i + len(m.group(0)))
                end = n if end < 0 else end + 1 + len(m.group(1))
                out.append(text[i:end])
                i = end
                continue
        if c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append(text[i : j + 1])
            i = j + 1
            continue
        if c == "'":
            m = re.match(r"'(\\u\{[0-9a-fA-F]+\}|\\.|[^\\'])'", text[i:])
            if m:
                out.append(m.group(0))
                i += len(m.group(0))
                continue
        out.append(c)
        i += 1
    return "".join(out)


def match_close(text: str, i: int) -> int:
    """The index of the bracket closing the one at text[i], skipping literals."""
    pairs = {"(": ")", "[": "]", "{": "}"}
    stack = []
    j, n = i, len(text)
    while j < n:
        c = text[j]
        if c == '"':
            j += 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
        elif c == "'":
            m = re.match(r"'(\\u\{[0-9a-fA-F]+\}|\\.|[^\\'])'", text[j:])
            if m:
                j += len(m.group(0)) - 1
        elif c in pairs:
            stack.append(pairs[c])
        elif c in ")]}":
            if not stack or stack.pop() != c:
                raise ValueError(f"unbalanced {c!r} near {text[max(0, j - 40):j + 10]!r}")
            if not stack:
                return j
        j += 1
    raise ValueError(f"no closing bracket for {text[i:i + 40]!r}")


def source_files() -> list[Path]:
    """The workspace's library and binary sources (not tests, not target/)."""
    files = []
    for src in sorted(ROOT.glob("*/src")):
        if src.parent.name in {"target", "deploy"}:
            continue
        files.extend(sorted(src.rglob("*.rs")))
    return files


# ---------------------------------------------------------------- metrics

METRIC_MACRO = re.compile(
    r"\b(?:metrics::)?(counter|gauge|histogram|describe_counter|describe_gauge|describe_histogram)!\s*\("
)


@dataclass
class Metric:
    name: str
    kinds: set = field(default_factory=set)
    labels: set = field(default_factory=set)
    recorded: bool = False
    described: bool = False
    sites: set = field(default_factory=set)

    def series(self) -> set:
        if "histogram" in self.kinds:
            return {self.name + s for s in ("_bucket", "_sum", "_count")}
        return {self.name}


def rust_metrics() -> dict:
    """Every zkfarm_* metric the sources record or describe, with its labels.

    A macro whose name argument is a variable (a helper such as
    `fn count(name, layer)`) is credited to the string literals that the
    same file passes to that helper.
    """
    found: dict[str, Metric] = {}
    for path in source_files():
        text = strip_rust_comments(path.read_text())
        for m in METRIC_MACRO.finditer(text):
            close = match_close(text, m.end() - 1)
            args = text[m.end() : close]
            kind = m.group(1).replace("describe_", "")
            described = m.group(1).startswith("describe_")
            labels = set(re.findall(r'"([A-Za-z_][A-Za-z0-9_]*)"\s*=>', args))
            lit = re.match(r'\s*"([^"]+)"', args)
            if lit:
                names = [lit.group(1)]
            else:
                fns = re.findall(r"\bfn\s+(\w+)", text[: m.start()])
                names = re.findall(r"\b" + fns[-1] + r'\(\s*"([a-z][a-z0-9_]*)"', text) if fns else []
            for name in names:
                if not name.startswith("zkfarm_"):
                    continue
                metric = found.setdefault(name, Metric(name))
                metric.kinds.add(kind)
                metric.sites.add(rel(path))
                if described:
                    metric.described = True
                else:
                    metric.recorded = True
                    metric.labels |= labels
    return found


def rust_process_env() -> set:
    """ZKFARM_* variables the code reads directly (not through clap)."""
    names = set()
    for path in source_files():
        text = path.read_text()
        names |= set(re.findall(r'env::var(?:_os)?\(\s*"(ZKFARM_\w+)"', text))
        names |= set(re.findall(r'try_from_env\(\s*"(ZKFARM_\w+)"', text))
    return names


# ---------------------------------------------------------------- the CLI


@dataclass
class Flag:
    long: str | None
    short: str | None
    takes_value: bool
    env: str | None
    is_global: bool
    value_type: str = ""


@dataclass
class Node:
    path: tuple
    flags: dict = field(default_factory=dict)  # long name -> Flag
    shorts: dict = field(default_factory=dict)  # short letter -> Flag
    subs: dict = field(default_factory=dict)
    positionals: int = 0

    def add(self, flag: Flag) -> None:
        if flag.long:
            self.flags[flag.long] = flag
        if flag.short:
            self.shorts[flag.short] = flag

    def envs(self) -> set:
        return {f.env for f in self.flags.values() if f.env}

    def name(self) -> str:
        return " ".join(("zkfarm",) + self.path)


def kebab_type(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "-", name).lower()


def type_name(ty: str) -> str:
    ty = ty.strip()
    m = re.fullmatch(r"(?:\w+::)*(?:Option|Box)<(.+)>", ty)
    if m:
        return type_name(m.group(1))
    return ty.split("::")[-1].strip()


def value_type(ty: str) -> str:
    """The type one value of a flag parses into: Option<T> and Vec<T> give T."""
    ty = ty.strip()
    m = re.fullmatch(r"(?:\w+::)*(?:Option|Vec)<(.+)>", ty)
    return value_type(m.group(1)) if m else ty.split("::")[-1].strip()


def from_str_values() -> dict:
    """For each type with a hand-written FromStr in the workspace, the
    strings its `match` accepts."""
    out = {}
    for path in source_files():
        text = strip_rust_comments(path.read_text())
        for m in re.finditer(r"\bimpl\s+(?:std::str::)?FromStr\s+for\s+(\w+)\s*\{", text):
            body = text[m.end() : match_close(text, m.end() - 1)]
            values = re.findall(r'"([^"]+)"\s*(?=\||=>)', body)
            if values:
                out[m.group(1)] = set(values)
    return out


INTEGER_TYPES = {"u8", "u16", "u32", "u64", "usize", "i8", "i16", "i32", "i64", "isize"}


def value_problem(flag: Flag, value: str, enums: dict) -> str | None:
    """Why `value` cannot be a value of `flag`, or None; $(VAR) and ${VAR}
    are left to the shell or Kubernetes."""
    if re.search(r"\$[({]?\w", value):
        return None
    t = flag.value_type
    if t in INTEGER_TYPES and not re.fullmatch(r"-?\d+", value):
        return f"--{flag.long} takes an integer ({t}), not {value!r}"
    if t == "SocketAddr" and host_port(value)[1] is None:
        return f"--{flag.long} takes an address HOST:PORT, not {value!r}"
    if t in enums and value not in enums[t]:
        return f"--{flag.long} takes one of {sorted(enums[t])}, not {value!r}"
    return None


def entries(body: str):
    """Yields (attributes, name, shape, rest) for each field or variant."""
    i, n = 0, len(body)
    name_re = re.compile(r"(?:pub(?:\s*\([^)]*\))?\s+)?(\w+)\s*")
    while i < n:
        while i < n and body[i] in " \t\r\n,":
            i += 1
        if i >= n:
            break
        attrs = []
        while body.startswith("#[", i):
            j = match_close(body, i + 1)
            attrs.append(body[i + 2 : j].strip())
            i = j + 1
            while i < n and body[i] in " \t\r\n":
                i += 1
        m = name_re.match(body, i)
        if not m:
            raise ValueError(f"cannot read a field near {body[i:i + 40]!r}")
        name, i = m.group(1), m.end()
        if i < n and body[i] == ":":
            j, depth = i + 1, 0
            while j < n:
                c = body[j]
                if c in "<([{":
                    depth += 1
                elif c in ">)]}":
                    depth -= 1
                elif c == "," and depth == 0:
                    break
                j += 1
            yield attrs, name, "field", body[i + 1 : j].strip()
            i = j
        elif i < n and body[i] in "{(":
            j = match_close(body, i)
            yield attrs, name, "struct" if body[i] == "{" else "tuple", body[i + 1 : j]
            i = j + 1
        else:
            j = body.find(",", i)
            yield attrs, name, "unit", ""
            i = n if j < 0 else j


class Cli:
    """The `zkfarm` command tree, read from the clap derive in cli/src."""

    def __init__(self) -> None:
        self.items: dict[str, tuple[str, str]] = {}
        for path in sorted((ROOT / "cli" / "src").rglob("*.rs")):
            text = strip_rust_comments(path.read_text())
            for m in re.finditer(r"\b(struct|enum)\s+(\w+)\s*(?:<[^>{;]*>)?\s*\{", text):
                close = match_close(text, m.end() - 1)
                self.items.setdefault(m.group(2), (m.group(1), text[m.end() : close]))
        self.enums = from_str_values()
        self.root = Node(())
        self.root.add(Flag("version", "V", False, None, False))
        self.fields(self.root, self.items["Cli"][1])
        self.propagate(self.root, {})

    def fields(self, node: Node, body: str) -> None:
        node.add(Flag("help", "h", False, None, False))
        for attrs, name, shape, ty in entries(body):
            if shape != "field":
                continue
            commands = [a for a in attrs if re.match(r"command\s*\(", a)]
            arg = next((a for a in attrs if re.match(r"arg\s*\(", a)), None)
            if any(re.search(r"\bflatten\b", a) for a in commands):
                kind, inner = self.items[type_name(ty)]
                self.fields(node, inner)
            elif any(re.search(r"\bsubcommand\b", a) for a in commands):
                self.subcommands(node, type_name(ty))
            elif arg is None:
                node.positionals += 1
            else:
                inner = arg[arg.index("(") + 1 : arg.rindex(")")]
                m = re.search(r'\blong\s*=\s*"([^"]+)"', inner)
                long = m.group(1) if m else (name.replace("_", "-") if re.search(r"\blong\b(?!\s*=)", inner) else None)
                m = re.search(r"\bshort\s*=\s*'(.)'", inner)
                short = m.group(1) if m else (name[0] if re.search(r"\bshort\b(?!\s*=)", inner) else None)
                if long is None and short is None:
                    node.positionals += 1
                    continue
                m = re.search(r'\benv\s*=\s*"([^"]+)"', inner)
                flag_like = ty.strip() == "bool" or re.search(r"ArgAction::(SetTrue|SetFalse|Count)", inner)
                node.add(
                    Flag(
                        long,
                        short,
                        not flag_like,
                        m.group(1) if m else None,
                        bool(re.search(r"\bglobal\s*=\s*true", inner)),
                        value_type(ty),
                    )
                )

    def subcommands(self, node: Node, enum: str) -> None:
        kind, body = self.items[enum]
        for attrs, name, shape, rest in entries(body):
            m = next((re.search(r'\bname\s*=\s*"([^"]+)"', a) for a in attrs if a.startswith("command")), None)
            cli_name = m.group(1) if m else kebab_type(name)
            child = Node(node.path + (cli_name,))
            child.add(Flag("help", "h", False, None, False))
            if shape == "struct":
                self.fields(child, rest)
            elif shape == "tuple":
                kind, inner = self.items[type_name(rest)]
                if kind == "struct":
                    self.fields(child, inner)
                else:
                    self.subcommands(child, type_name(rest))
            node.subs[cli_name] = child

    def propagate(self, node: Node, inherited: dict) -> None:
        for long, flag in inherited.items():
            node.flags.setdefault(long, flag)
            if flag.short:
                node.shorts.setdefault(flag.short, flag)
        down = dict(inherited)
        down.update({k: f for k, f in node.flags.items() if f.is_global})
        for child in node.subs.values():
            self.propagate(child, down)

    def find(self, path: tuple) -> Node | None:
        node = self.root
        for p in path:
            node = node.subs.get(p)
            if node is None:
                return None
        return node


@dataclass
class Invocation:
    """One `zkfarm ...` command line found in compose.yaml or a manifest."""

    where: str
    path: tuple
    values: dict
    problems: list
    node: Node | None


def parse_argv(cli: Cli, argv: list, where: str) -> Invocation:
    node = cli.root
    values: dict = {}
    problems: list = []
    i = 0
    while i < len(argv):
        tok = str(argv[i])
        if tok == "--":
            break
        if tok.startswith("-") and len(tok) > 1:
            if tok.startswith("--"):
                name, eq, val = tok[2:].partition("=")
                flag = node.flags.get(name)
            else:
                name, val, eq = tok[1], tok[2:], ""
                flag = node.shorts.get(name)
                eq = "=" if val else ""
            if flag is None:
                problems.append(f"{where}: `{node.name()}` has no option {tok.split('=')[0]}")
                takes_value = i + 1 < len(argv) and not str(argv[i + 1]).startswith("-")
                key = name
            else:
                takes_value = flag.takes_value
                key = flag.long or flag.short
                if not takes_value and eq:
                    problems.append(f"{where}: {tok} takes no value")
            if takes_value and not eq:
                if i + 1 >= len(argv):
                    problems.append(f"{where}: {tok} needs a value")
                    val = ""
                else:
                    val = str(argv[i + 1])
                    i += 1
            if flag is not None and takes_value:
                why = value_problem(flag, val, cli.enums)
                if why:
                    problems.append(f"{where}: {why}")
            values[key] = val if takes_value else True
        elif tok in node.subs:
            node = node.subs[tok]
        elif node.subs and not node.positionals:
            problems.append(f"{where}: `{node.name()}` has no subcommand {tok!r}")
            break
        i += 1
    if node.subs:
        problems.append(f"{where}: `{node.name()}` needs a subcommand")
    return Invocation(where, node.path, values, problems, node)


SHELLS = {"sh", "bash", "/bin/sh", "/bin/bash", "/usr/bin/env"}


def zkfarm_argvs(full: list, compose: bool) -> list:
    """The zkfarm argument lists in a container's full command line."""
    if not full:
        return []
    first = str(full[0])
    if first == "zkfarm" or first.endswith("/zkfarm"):
        return [[str(a) for a in full[1:]]]
    if first in SHELLS and "-c" in full:
        k = full.index("-c")
        if k + 1 >= len(full):
            return []
        script = str(full[k + 1])
        if compose:
            script = script.replace("$$", "$")
        lex = shlex.shlex(script, posix=True, punctuation_chars=True)
        lex.whitespace_split = True
        toks = list(lex)
        out = []
        for j, t in enumerate(toks):
            if t == "zkfarm" or t.endswith("/zkfarm"):
                argv = []
                for u in toks[j + 1 :]:
                    if u and set(u) <= set(";&|()<>"):
                        break
                    argv.append(u)
                out.append(argv)
        return out
    return []


def check_env(inv: Invocation, env_names: set, process_env: set) -> list:
    if inv.node is None:
        return []
    known = inv.node.envs() | process_env
    return [
        f"{inv.where}: {name} is set but `{inv.node.name()}` reads no such variable"
        for name in sorted(env_names)
        if name.startswith("ZKFARM_") and name not in known
    ]


def host_port(addr: str) -> tuple:
    m = re.match(r"^(?:[a-z]+://)?\[?([^\]/]*?)\]?:(\d+)(?:/.*)?$", addr)
    return (m.group(1), int(m.group(2))) if m else (None, None)


def store_of(inv: Invocation, env: dict) -> str | None:
    """The job store a coordinator opens: its --store, else ZKFARM_STORE."""
    v = inv.values.get("store") or env.get("ZKFARM_STORE")
    return None if v in (None, True, "sqlite") else str(v)


def postgres_host(url: str) -> str | None:
    """The host of a postgres:// URL (credentials and ${...} left out)."""
    m = re.match(r"^postgres(?:ql)?://(?:.*@)?([^:/?@]+)", url)
    return m.group(1) if m else None


def check_stores(stores: dict) -> list:
    """One coordinator on SQLite, or any number sharing one PostgreSQL."""
    kinds = set(stores.values())
    if not stores:
        return ["no coordinator found"]
    if None in kinds and len(stores) > 1:
        return [f"SQLite takes one coordinator, but there are {sorted(stores)}; give them one --store postgres://"]
    if len(kinds) > 1:
        return [f"the coordinators must share one job store: {stores}"]
    return []


def describe_store(coordinators: dict) -> str:
    store = next(iter(coordinators.values()), None)
    return f"PostgreSQL at {postgres_host(store)}" if store else "SQLite"


def drain_timeout(inv: Invocation) -> int:
    v = inv.values.get("drain-timeout")
    return int(v) if v not in (None, True) else DEFAULT_DRAIN_TIMEOUT


# ---------------------------------------------------------------- checks


def check_yaml_parses():
    files = sorted(list(DEPLOY.rglob("*.yaml")) + list(DEPLOY.rglob("*.yml")))
    problems, docs = [], 0
    for f in files:
        try:
            docs += len(load_yaml_docs(f))
        except yaml.YAMLError as e:
            problems.append(f"{rel(f)}: {e}")
    if not files:
        problems.append("no YAML files under deploy/")
    return problems, f"{len(files)} files, {docs} documents"


def check_sources(metrics: dict, cli: Cli, process_env: set):
    problems = []
    recorded = sorted(m.name for m in metrics.values() if m.recorded)
    if not recorded:
        problems.append("no metrics found in the Rust sources: has the recording changed form?")
    for m in metrics.values():
        if len(m.kinds) > 1:
            problems.append(f"{m.name} is recorded as {sorted(m.kinds)}")
    for path in [("coordinator",), ("worker",), ("srs", "gen")]:
        if cli.find(path) is None:
            problems.append(f"the CLI has no `zkfarm {' '.join(path)}`")
    undescribed = sorted(m.name for m in metrics.values() if m.recorded and not m.described)
    note = f" (recorded without a description: {', '.join(undescribed)})" if undescribed else ""
    return problems, (
        f"{len(recorded)} metrics recorded, {len(cli.root.subs)} zkfarm subcommands, "
        f"{len(process_env)} ZKFARM_* variables read directly{note}"
    )


def check_compose_schema():
    cmd = [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec", str(COMPOSE)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        return [line for line in (r.stdout + r.stderr).strip().splitlines() if line.strip()] or ["failed"], ""
    return [], "deploy/compose.yaml matches the compose specification (check-jsonschema vendor.compose-spec)"


def compose_is_zkfarm(svc: dict) -> bool:
    image = str(svc.get("image", ""))
    dockerfile = str((svc.get("build") or {}).get("dockerfile", "")) if isinstance(svc.get("build"), dict) else ""
    return bool(re.match(r"^(.*/)?zkfarm(-cuda)?(:|$)", image)) or dockerfile.startswith("deploy/docker/")


def as_list(v) -> list:
    if v is None:
        return []
    if isinstance(v, str):
        return shlex.split(v)
    return list(v)


def compose_env(svc: dict) -> dict:
    env = svc.get("environment") or {}
    if isinstance(env, list):
        return dict(e.split("=", 1) if "=" in e else (e, "") for e in env)
    return dict(env)


def compose_mounts(svc: dict) -> list:
    """(target, source id, read-only) of each volume of a service."""
    out = []
    for v in svc.get("volumes") or []:
        if isinstance(v, str):
            parts = v.split(":")
            src, dst = parts[0], parts[1] if len(parts) > 1 else parts[0]
            ro = len(parts) > 2 and "ro" in parts[2].split(",")
        else:
            src, dst, ro = v.get("source", ""), v.get("target", ""), bool(v.get("read_only"))
        kind = "bind" if src.startswith((".", "/", "~")) else "volume"
        out.append((dst, f"{kind}:{src}", ro))
    return out


def mount_of(mounts: list, path: str):
    best = None
    for dst, src, ro in mounts:
        if path == dst or path.startswith(dst.rstrip("/") + "/"):
            if best is None or len(dst) > len(best[0]):
                best = (dst, src, ro)
    return best


def record_srs(key: str, path: str, mounts: list, srs_paths: dict, srs_sources: dict):
    """Notes where `key` (a service or container) reads or writes the SRS and
    which volume holds it; returns the mount, or None."""
    srs_paths[key] = path
    m = mount_of(mounts, path)
    srs_sources[key] = m[1] if m else None
    return m


def duration_seconds(s) -> float:
    if isinstance(s, (int, float)):
        return float(s)
    total, units = 0.0, {"h": 3600, "m": 60, "s": 1, "ms": 0.001, "us": 1e-6}
    for num, unit in re.findall(r"([\d.]+)(ms|us|h|m|s)", str(s)):
        total += float(num) * units[unit]
    return total


def compose_invocations(cli: Cli, compose: dict) -> dict:
    out = {}
    for name, svc in (compose.get("services") or {}).items():
        if not compose_is_zkfarm(svc):
            continue
        entry = as_list(svc.get("entrypoint")) if "entrypoint" in svc else ["zkfarm"]
        full = entry + as_list(svc.get("command"))
        out[name] = [
            parse_argv(cli, argv, f"compose service {name}") for argv in zkfarm_argvs(full, True)
        ]
    return out


def check_compose(cli: Cli, compose: dict, process_env: set):
    problems = []
    services = compose.get("services") or {}
    volumes = set((compose.get("volumes") or {}).keys())
    invs = compose_invocations(cli, compose)
    srs_paths, srs_sources, coordinators = {}, {}, {}
    for name, svc in services.items():
        where = f"compose service {name}"
        deps = svc.get("depends_on") or []
        for dep in deps if isinstance(deps, list) else deps.keys():
            if dep not in services:
                problems.append(f"{where}: depends on unknown service {dep}")
        for dst, src, ro in compose_mounts(svc):
            kind, source = src.split(":", 1)
            if kind == "volume" and source not in volumes:
                problems.append(f"{where}: volume {source} is not declared under volumes:")
            if kind == "bind" and not (DEPLOY / source).exists():
                problems.append(f"{where}: bind source {source} does not exist (relative to deploy/)")
        build = svc.get("build")
        if isinstance(build, dict):
            ctx = (DEPLOY / build.get("context", ".")).resolve()
            if not (ctx / build.get("dockerfile", "Dockerfile")).exists():
                problems.append(f"{where}: {build.get('dockerfile')} is not in the build context {rel(ctx)}")
        if name not in invs:
            continue
        entry = as_list(svc.get("entrypoint")) if "entrypoint" in svc else ["zkfarm"]
        if not invs[name] and (not entry or str(entry[0]) not in SHELLS):
            problems.append(f"{where}: runs the zkfarm image but no zkfarm command could be read")
        env = compose_env(svc)
        mounts = compose_mounts(svc)
        for inv in invs[name]:
            problems += inv.problems
            problems += check_env(inv, set(env), process_env)
            role = inv.path[:1]
            if inv.path == ("srs", "gen"):
                out = inv.values.get("output")
                if not out:
                    problems.append(f"{where}: `zkfarm srs gen` without --output writes into the container's own home")
                else:
                    record_srs(name, out, mounts, srs_paths, srs_sources)
            if role not in (("coordinator",), ("worker",)):
                continue
            if role == ("coordinator",):
                store = store_of(inv, env)
                coordinators[name] = store
                replicas = (svc.get("deploy") or {}).get("replicas", 1)
                if store is None and replicas != 1:
                    problems.append(f"{where}: the coordinator's SQLite store takes one writer; replicas is {replicas}")
                if store is None:
                    data = inv.values.get("data", "/var/lib/zkfarm/farm")
                    m = mount_of(mounts, data)
                    if not m or not m[1].startswith("volume:"):
                        problems.append(
                            f"{where}: the store ({data}) is not on a named volume, so it dies with the container"
                        )
                elif not store.startswith(("postgres://", "postgresql://")):
                    problems.append(f"{where}: --store {store} is neither sqlite nor a postgres:// URL")
                elif postgres_host(store) not in services:
                    problems.append(f"{where}: the store {store} names no compose service")
                else:
                    deps = svc.get("depends_on") or {}
                    cond = (deps.get(postgres_host(store)) or {}) if isinstance(deps, dict) else {}
                    if cond.get("condition") != "service_healthy":
                        problems.append(f"{where}: start after the store is healthy (depends_on: service_healthy)")
            srs = inv.values.get("srs")
            if not srs:
                problems.append(f"{where}: no --srs: each container would use its own default SRS")
            else:
                m = record_srs(name, srs, mounts, srs_paths, srs_sources)
                if m and not m[2]:
                    problems.append(f"{where}: mount the SRS read-only (only the srs service writes it)")
            metrics = inv.values.get("metrics")
            if not metrics:
                problems.append(f"{where}: no --metrics, so no /metrics, /healthz or /readyz")
            else:
                port = host_port(metrics)[1]
                test = as_list((svc.get("healthcheck") or {}).get("test"))
                text = " ".join(str(t) for t in test)
                if "curl" not in text or not re.search(r"\s-\w*f", text):
                    problems.append(f"{where}: the health check should be `curl -f` (fail on HTTP errors): {text!r}")
                urls = re.findall(r"http://[^\s\"']+", text)
                if not any(host_port(u)[1] == port and u.endswith(tuple(HEALTH_PATHS.values())) for u in urls):
                    problems.append(
                        f"{where}: the health check must ask /readyz or /healthz on the metrics port {port}: {text!r}"
                    )
            if role == ("worker",):
                grace = duration_seconds(svc.get("stop_grace_period", "10s"))
                if grace <= drain_timeout(inv):
                    problems.append(
                        f"{where}: stop_grace_period {grace:g}s is not above --drain-timeout {drain_timeout(inv)}s"
                    )
                for flag in ("coordinator", "redis"):
                    for url in str(inv.values.get(flag) or "").split(","):
                        host = host_port(url)[0]
                        if url and host not in services:
                            problems.append(f"{where}: --{flag} {url} names no compose service")
                cuda = inv.values.get("engine") == "cuda"
                devices = (((svc.get("deploy") or {}).get("resources") or {}).get("reservations") or {}).get(
                    "devices"
                ) or []
                gpu = any(d.get("driver") == "nvidia" or "gpu" in (d.get("capabilities") or []) for d in devices)
                if cuda and not gpu:
                    problems.append(f"{where}: --engine cuda without an nvidia device reservation")
                if cuda and "gpu" not in (svc.get("profiles") or []):
                    problems.append(
                        f"{where}: the GPU worker belongs in the `gpu` profile, so a host without GPUs still starts"
                    )
                if cuda and not str(svc.get("image", "")).split("/")[-1].startswith("zkfarm-cuda"):
                    problems.append(f"{where}: --engine cuda needs the zkfarm-cuda image")
                if gpu and not cuda:
                    problems.append(f"{where}: reserves a GPU but does not run --engine cuda")
    problems += check_stores(coordinators)
    if len(set(srs_paths.values())) > 1:
        problems.append(f"the SRS paths differ: {srs_paths}")
    if len(set(srs_sources.values())) != 1 or None in srs_sources.values():
        problems.append(f"the SRS must come from one shared volume: {srs_sources}")
    elif not next(iter(srs_sources.values())).startswith("volume:"):
        problems.append(f"the SRS is not on a named volume: {srs_sources}")
    n = sum(len(v) for v in invs.values())
    return problems, (
        f"{len(services)} services, {n} zkfarm command lines whose options all exist, "
        f"{len(coordinators)} coordinator(s) on {describe_store(coordinators)}, "
        f"one SRS ({next(iter(set(srs_paths.values())), '?')}) on {next(iter(set(srs_sources.values())), '?')}"
    )


def prometheus_targets(config: dict) -> tuple:
    """(host, port) pairs scraped, and the labels the configuration adds."""
    targets, labels = set(), set()
    for job in config.get("scrape_configs") or []:
        for sc in job.get("static_configs") or []:
            for t in sc.get("targets") or []:
                targets.add(host_port(t))
            labels |= set((sc.get("labels") or {}).keys())
        for sd in job.get("dns_sd_configs") or []:
            for n in sd.get("names") or []:
                targets.add((n, int(sd.get("port", 0))))
        for rc in job.get("relabel_configs") or []:
            if rc.get("target_label"):
                labels.add(rc["target_label"])
    return targets, labels


def check_prometheus_compose(cli: Cli, compose: dict):
    problems = []
    config = load_yaml_docs(PROMETHEUS)[0]
    jobs = [j.get("job_name") for j in config.get("scrape_configs") or []]
    if len(set(jobs)) != len(jobs):
        problems.append(f"duplicate job names: {jobs}")
    targets, _ = prometheus_targets(config)
    services = compose.get("services") or {}
    for host, port in targets:
        if host not in services:
            problems.append(f"target {host}:{port} is no compose service")
    for name, invs in compose_invocations(cli, compose).items():
        for inv in invs:
            metrics = inv.values.get("metrics")
            if metrics and (name, host_port(metrics)[1]) not in targets:
                problems.append(f"compose service {name} serves metrics on {metrics} but is not scraped")
    mounted = any(
        dst == "/etc/prometheus/prometheus.yml" and src == "bind:./prometheus/prometheus.yml"
        for svc in services.values()
        for dst, src, _ in compose_mounts(svc)
    )
    if not mounted:
        problems.append("no compose service mounts ./prometheus/prometheus.yml at /etc/prometheus/prometheus.yml")
    shown = ", ".join(f"{h}:{p}" for h, p in sorted(targets))
    return problems, f"jobs {', '.join(jobs)}; targets {shown}"


# ------------------------------------------------------------ Kubernetes


def k8s_docs() -> list:
    out = []
    for f in sorted(K8S.rglob("*.yaml")) + sorted(K8S.rglob("*.yml")):
        for d in load_yaml_docs(f):
            out.append((f, d))
    return out


def check_k8s_schema(versions: list):
    import kubernetes_validate
    from kubernetes_validate import utils as kv

    problems = []
    resolved = [kv.latest_version() if v == "latest" else v for v in versions]
    docs = k8s_docs()
    for version in resolved:
        for f, d in docs:
            what = f"{rel(f)} {d.get('kind')}/{(d.get('metadata') or {}).get('name')} (Kubernetes {version})"
            try:
                kubernetes_validate.validate(d, version, strict=True)
            except kv.ValidationError as e:
                path = ".".join(str(p) for p in e.path)
                problems.append(f"{what}: {path}: {e.message}")
            except (kv.SchemaNotFoundError, kv.VersionNotSupportedError) as e:
                problems.append(f"{what}: {e.message}")
    if not docs:
        problems.append("no manifests under deploy/k8s")
    kinds = sorted({d.get("kind") for _, d in docs})
    return problems, f"{len(docs)} objects ({', '.join(kinds)}) valid, strict, for Kubernetes {', '.join(resolved)}"


def pod_of(obj: dict):
    spec = obj.get("spec") or {}
    if obj.get("kind") in ("Deployment", "StatefulSet", "DaemonSet", "Job", "ReplicaSet"):
        return (spec.get("template") or {}).get("spec") or {}, ((spec.get("template") or {}).get("metadata") or {})
    if obj.get("kind") == "CronJob":
        t = ((spec.get("jobTemplate") or {}).get("spec") or {}).get("template") or {}
        return t.get("spec") or {}, t.get("metadata") or {}
    if obj.get("kind") == "Pod":
        return spec, obj.get("metadata") or {}
    return None, None


def k8s_is_zkfarm(container: dict) -> bool:
    return bool(re.match(r"^(.*/)?zkfarm(-cuda)?(:|@|$)", str(container.get("image", ""))))


def k8s_mounts(pod: dict, container: dict, obj: dict) -> list:
    vols = {v["name"]: v for v in pod.get("volumes") or []}
    templates = {
        (t.get("metadata") or {}).get("name") for t in (obj.get("spec") or {}).get("volumeClaimTemplates") or []
    }
    out = []
    for vm in container.get("volumeMounts") or []:
        v = vols.get(vm["name"])
        if v is None:
            src = f"claimTemplate:{vm['name']}" if vm["name"] in templates else f"missing:{vm['name']}"
        elif "persistentVolumeClaim" in v:
            src = f"pvc:{v['persistentVolumeClaim']['claimName']}"
        elif "emptyDir" in v:
            src = f"emptyDir:{vm['name']}"
        else:
            kind = next((k for k in v if k != "name"), "?")
            src = f"{kind}:{vm['name']}"
        out.append((vm["mountPath"], src, bool(vm.get("readOnly"))))
    return out


def container_argvs(container: dict) -> list:
    if "command" in container:
        full = list(container["command"]) + list(container.get("args") or [])
    elif k8s_is_zkfarm(container):
        full = ["zkfarm"] + list(container.get("args") or [])
    else:
        return []
    return zkfarm_argvs(full, False)


def resolve_port(container: dict, port) -> int | None:
    if isinstance(port, int):
        return port
    for p in container.get("ports") or []:
        if p.get("name") == port:
            return p.get("containerPort")
    return None


def check_k8s_policy(cli: Cli, process_env: set):
    problems = []
    docs = k8s_docs()
    index = {}
    for f, d in docs:
        index.setdefault(d.get("kind"), {})[(d.get("metadata") or {}).get("name")] = d
    services = index.get("Service", {})
    pod_labels = []
    srs_paths, srs_sources, coordinators, workloads = {}, {}, {}, 0
    for f, obj in docs:
        pod, meta = pod_of(obj)
        if pod is None:
            continue
        workloads += 1
        kind, name = obj["kind"], obj["metadata"]["name"]
        where = f"{rel(f)} {kind}/{name}"
        labels = meta.get("labels") or {}
        pod_labels.append((labels, pod, obj))
        selector = ((obj.get("spec") or {}).get("selector") or {}).get("matchLabels")
        if kind in ("Deployment", "StatefulSet", "DaemonSet") and (
            not selector or any(labels.get(k) != v for k, v in selector.items())
        ):
            problems.append(f"{where}: spec.selector does not match the pod template's labels")
        psc = pod.get("securityContext") or {}
        volumes = {v["name"] for v in pod.get("volumes") or []}
        templates = {
            (t.get("metadata") or {}).get("name") for t in (obj.get("spec") or {}).get("volumeClaimTemplates") or []
        }
        for v in pod.get("volumes") or []:
            if "persistentVolumeClaim" in v and v["persistentVolumeClaim"]["claimName"] not in index.get(
                "PersistentVolumeClaim", {}
            ):
                problems.append(
                    f"{where}: volume {v['name']} claims unknown PVC {v['persistentVolumeClaim']['claimName']}"
                )
            if "secret" in v and v["secret"]["secretName"] not in index.get("Secret", {}):
                problems.append(f"{where}: volume {v['name']} names unknown Secret {v['secret']['secretName']}")
            if "configMap" in v and v["configMap"]["name"] not in index.get("ConfigMap", {}):
                problems.append(f"{where}: volume {v['name']} names unknown ConfigMap {v['configMap']['name']}")
        containers = [("container", c) for c in pod.get("containers") or []] + [
            ("initContainer", c) for c in pod.get("initContainers") or []
        ]
        for role_kind, c in containers:
            cw = f"{where} {role_kind} {c['name']}"
            res = c.get("resources") or {}
            for part in ("requests", "limits"):
                for r in ("cpu", "memory"):
                    if r not in (res.get(part) or {}):
                        problems.append(f"{cw}: no resources.{part}.{r}")
            csc = c.get("securityContext") or {}
            if not (csc.get("runAsNonRoot", psc.get("runAsNonRoot"))):
                problems.append(f"{cw}: runAsNonRoot is not set")
            if csc.get("allowPrivilegeEscalation") is not False:
                problems.append(f"{cw}: allowPrivilegeEscalation must be false")
            if "ALL" not in ((csc.get("capabilities") or {}).get("drop") or []):
                problems.append(f"{cw}: capabilities.drop must hold ALL")
            seccomp = (csc.get("seccompProfile") or psc.get("seccompProfile") or {}).get("type")
            if seccomp not in ("RuntimeDefault", "Localhost"):
                problems.append(f"{cw}: no seccompProfile RuntimeDefault")
            for vm in c.get("volumeMounts") or []:
                if vm["name"] not in volumes and vm["name"] not in templates:
                    problems.append(f"{cw}: mounts undeclared volume {vm['name']}")
            env_names = set()
            for e in c.get("env") or []:
                env_names.add(e["name"])
                ref = (e.get("valueFrom") or {}).get("secretKeyRef")
                if ref and ref["name"] not in index.get("Secret", {}):
                    problems.append(f"{cw}: env {e['name']} names unknown Secret {ref['name']}")
                elif ref and ref["key"] not in (
                    (index["Secret"][ref["name"]].get("stringData") or {})
                    | (index["Secret"][ref["name"]].get("data") or {})
                ):
                    problems.append(f"{cw}: env {e['name']} names key {ref['key']} that Secret {ref['name']} lacks")
            if not k8s_is_zkfarm(c):
                continue
            argvs = container_argvs(c)
            if not argvs and str((c.get("command") or ["zkfarm"])[0]) not in SHELLS:
                problems.append(f"{cw}: runs the zkfarm image but no zkfarm command could be read")
            mounts = k8s_mounts(pod, c, obj)
            for argv in argvs:
                inv = parse_argv(cli, argv, cw)
                problems += inv.problems
                problems += check_env(inv, env_names, process_env)
                for a in argv:
                    for var in re.findall(r"\$\((\w+)\)", str(a)):
                        if var not in env_names:
                            problems.append(f"{cw}: $({var}) in the arguments but no env {var}")
                if inv.path == ("srs", "gen"):
                    out = inv.values.get("output")
                    if out:
                        record_srs(cw, out, mounts, srs_paths, srs_sources)
                    else:
                        problems.append(f"{cw}: `zkfarm srs gen` without --output writes into the pod's own home")
                if inv.path not in (("coordinator",), ("worker",)) or role_kind != "container":
                    continue
                role = inv.path[0]
                srs = inv.values.get("srs")
                if not srs:
                    problems.append(f"{cw}: no --srs")
                else:
                    m = record_srs(cw, srs, mounts, srs_paths, srs_sources)
                    if m and not m[2]:
                        problems.append(f"{cw}: mount the SRS read-only")
                metrics = inv.values.get("metrics")
                port = host_port(metrics)[1] if metrics else None
                if port is None:
                    problems.append(f"{cw}: no --metrics, so no /metrics, /healthz or /readyz")
                for probe, path in (
                    (("readinessProbe", HEALTH_PATHS["readiness"]), ("livenessProbe", HEALTH_PATHS["liveness"]))
                    if port
                    else ()
                ):
                    get = (c.get(probe) or {}).get("httpGet")
                    if not get:
                        problems.append(f"{cw}: no {probe} with httpGet {path}")
                    elif get.get("path") != path or resolve_port(c, get.get("port")) != port:
                        problems.append(
                            f"{cw}: {probe} should get {path} on the metrics port {port}, not {get.get('path')} on {get.get('port')}"
                        )
                if port is not None and port not in [p.get("containerPort") for p in c.get("ports") or []]:
                    problems.append(f"{cw}: the metrics port {port} is not among the container's ports")
                gpus = {str((res.get(p) or {}).get("nvidia.com/gpu", "")) for p in ("requests", "limits")}
                if role == "coordinator":
                    env = {e["name"]: e.get("value") for e in c.get("env") or []}
                    store = store_of(inv, env)
                    coordinators[cw] = store
                    if store is None:
                        if kind != "StatefulSet" or (obj["spec"].get("replicas", 1) != 1):
                            problems.append(
                                f"{cw}: a coordinator on SQLite must be a StatefulSet of one replica (one writer)"
                            )
                        data = inv.values.get("data", "/var/lib/zkfarm/farm")
                        m = mount_of(mounts, data)
                        if not m or not m[1].startswith(("claimTemplate:", "pvc:")):
                            problems.append(f"{cw}: the store ({data}) is not on a PersistentVolumeClaim")
                    elif not store.startswith(("postgres://", "postgresql://")):
                        problems.append(f"{cw}: ZKFARM_STORE {store} is neither sqlite nor a postgres:// URL")
                    elif (postgres_host(store) or "").split(".")[0] not in services:
                        problems.append(f"{cw}: the store {store} names no Service in the manifests")
                    for var in re.findall(r"\$\((\w+)\)", store or ""):
                        if var not in env or list(env).index(var) > list(env).index("ZKFARM_STORE"):
                            problems.append(f"{cw}: ZKFARM_STORE uses $({var}), which no earlier env defines")
                if role == "worker":
                    grace = pod.get("terminationGracePeriodSeconds", K8S_DEFAULT_GRACE)
                    if grace <= drain_timeout(inv):
                        problems.append(
                            f"{cw}: terminationGracePeriodSeconds {grace} is not above --drain-timeout {drain_timeout(inv)}"
                        )
                    for flag in ("coordinator", "redis"):
                        url = inv.values.get(flag)
                        if url:
                            host, uport = host_port(url)
                            svc = services.get(host.split(".")[0]) if host else None
                            if svc is None or uport not in [p.get("port") for p in svc["spec"].get("ports") or []]:
                                problems.append(f"{cw}: --{flag} {url} names no Service port in the manifests")
                    cuda = inv.values.get("engine") == "cuda"
                    has_gpu = gpus != {""}
                    if cuda and (len(gpus) != 1 or has_gpu is False or int(next(iter(gpus)) or 0) < 1):
                        problems.append(f"{cw}: --engine cuda needs equal requests and limits of nvidia.com/gpu")
                    if cuda and not str(c.get("image", "")).split("/")[-1].startswith("zkfarm-cuda"):
                        problems.append(f"{cw}: --engine cuda needs the zkfarm-cuda image")
                    if has_gpu and not cuda:
                        problems.append(f"{cw}: holds a GPU but does not run --engine cuda")
    for name, svc in services.items():
        sel = (svc.get("spec") or {}).get("selector") or {}
        matched = [(l, p) for l, p, _ in pod_labels if sel and all(l.get(k) == v for k, v in sel.items())]
        if not matched:
            problems.append(f"Service {name} selects no pod template")
            continue
        for port in (svc.get("spec") or {}).get("ports") or []:
            target = port.get("targetPort", port.get("port"))
            if not any(resolve_port(c, target) is not None for _, p in matched for c in p.get("containers") or []):
                problems.append(f"Service {name} port {port.get('name')}: targetPort {target} is no container port")
    for claim in set(srs_sources.values()):
        if claim and claim.startswith("pvc:"):
            pvc = index.get("PersistentVolumeClaim", {}).get(claim[4:])
            modes = ((pvc or {}).get("spec") or {}).get("accessModes") or []
            if "ReadWriteMany" not in modes and "ReadOnlyMany" not in modes:
                problems.append(
                    f"PVC {claim[4:]} holds the shared SRS but is not ReadWriteMany: pods on other nodes cannot mount it"
                )
    problems += check_stores(coordinators)
    if len(set(srs_paths.values())) > 1:
        problems.append(f"the SRS paths differ: {srs_paths}")
    sources = set(srs_sources.values())
    if len(sources) != 1 or None in sources:
        problems.append(f"coordinator, workers and the SRS job must share one SRS volume: {srs_sources}")
    elif not next(iter(sources)).startswith("pvc:"):
        problems.append(
            f"the SRS is not on a PersistentVolumeClaim (an SRS made per pod differs per pod): {srs_sources}"
        )
    return problems, (
        f"{workloads} workloads: resources, non-root, probes, grace periods, references and selectors hold; "
        f"coordinators on {describe_store(coordinators)}; "
        f"SRS {next(iter(set(srs_paths.values())), '?')} from {next(iter(sources), '?')}"
    )


def check_prometheus_k8s():
    problems = []
    docs = k8s_docs()
    services = {d["metadata"]["name"]: d for _, d in docs if d.get("kind") == "Service"}
    configs = [
        (d["metadata"]["name"], d["data"]["prometheus.yml"])
        for _, d in docs
        if d.get("kind") == "ConfigMap" and "prometheus.yml" in (d.get("data") or {})
    ]
    if len(configs) != 1:
        return [f"expected one ConfigMap with prometheus.yml, found {[c[0] for c in configs]}"], ""
    config = yaml.safe_load(configs[0][1])
    targets, _ = prometheus_targets(config)
    hosts = {(h.split(".")[0], p) for h, p in targets if h}
    for host, port in targets:
        base = host.split(".")[0] if host else None
        svc = services.get(base)
        if svc is None or port not in [p.get("port") for p in svc["spec"].get("ports") or []]:
            problems.append(f"target {host}:{port} is no Service port in the manifests")
    for name, svc in services.items():
        for port in svc["spec"].get("ports") or []:
            if port.get("name") == "metrics" and (name, port.get("port")) not in hosts:
                problems.append(f"Service {name} exposes metrics on {port.get('port')} but is not scraped")
    shown = ", ".join(f"{h}:{p}" for h, p in sorted(targets))
    return problems, f"ConfigMap {configs[0][0]} scrapes {shown}"


# ---------------------------------------------------------------- Grafana


def grafana_datasource_uid() -> tuple:
    uids, problems = [], []
    for f in sorted((GRAFANA / "provisioning" / "datasources").glob("*.y*ml")):
        for d in load_yaml_docs(f):
            for ds in d.get("datasources") or []:
                if ds.get("type") == "prometheus":
                    uids.append((ds.get("uid"), ds.get("url")))
    if len(uids) != 1:
        problems.append(f"expected one provisioned Prometheus data source, found {uids}")
    return (uids[0] if uids else (None, None)), problems


def check_grafana_provisioning(compose: dict):
    (uid, url), problems = grafana_datasource_uid()
    if uid is None:
        problems.append("the Prometheus data source has no uid; the dashboard names it by uid")
    services = compose.get("services") or {}
    host, port = host_port(url or "")
    if host not in services:
        problems.append(f"the data source URL {url} names no compose service")
    mounts = [m for svc in services.values() for m in compose_mounts(svc)]
    paths = []
    for f in sorted((GRAFANA / "provisioning" / "dashboards").glob("*.y*ml")):
        for d in load_yaml_docs(f):
            for p in d.get("providers") or []:
                path = (p.get("options") or {}).get("path")
                paths.append(path)
                m = mount_of(mounts, path or "/nonexistent")
                if not m or m[1] != "bind:./grafana/dashboards":
                    problems.append(f"dashboard provider path {path} is not where compose mounts ./grafana/dashboards")
    if not paths:
        problems.append("no dashboard provider")
    if not any(dst == "/etc/grafana/provisioning" and src == "bind:./grafana/provisioning" for dst, src, _ in mounts):
        problems.append("compose does not mount ./grafana/provisioning at /etc/grafana/provisioning")
    return problems, f"data source uid {uid} ({url}); dashboards from {', '.join(map(str, paths))}"


PROMQL_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
PROMQL_METRIC = re.compile(r"\b(zkfarm_[a-zA-Z0-9_:]+)\s*(\{([^}]*)\})?")


def walk_panels(panels: list):
    for p in panels:
        yield p
        yield from walk_panels(p.get("panels") or [])


def check_dashboard(metrics: dict, target_labels: set):
    problems = []
    (uid, _), _ = grafana_datasource_uid()
    files = sorted((GRAFANA / "dashboards").glob("*.json"))
    series = {}
    for m in metrics.values():
        if not m.recorded:
            continue
        for s in m.series():
            series[s] = m
    used, count = set(), 0
    for f in files:
        try:
            dash = json.loads(f.read_text())
        except json.JSONDecodeError as e:
            problems.append(f"{rel(f)}: {e}")
            continue
        if not dash.get("uid") or not dash.get("title"):
            problems.append(f"{rel(f)}: the dashboard needs a uid and a title")
        ids = []
        for p in walk_panels(dash.get("panels") or []):
            if p.get("type") == "row":
                continue
            count += 1
            ids.append(p.get("id"))
            where = f"{rel(f)} panel {p.get('id')} {p.get('title')!r}"
            ds = p.get("datasource") or {}
            if not isinstance(ds, dict) or ds.get("uid") != uid:
                problems.append(f"{where}: data source {ds!r} is not the provisioned uid {uid}")
            if "gridPos" not in p:
                problems.append(f"{where}: no gridPos")
            targets = p.get("targets") or []
            if not targets:
                problems.append(f"{where}: no targets")
            for t in targets:
                tw = f"{where} target {t.get('refId')}"
                tds = t.get("datasource") or ds
                if not isinstance(tds, dict) or tds.get("uid") != uid:
                    problems.append(f"{tw}: data source {tds!r} is not {uid}")
                expr = t.get("expr") or ""
                if not expr.strip():
                    problems.append(f"{tw}: no expr")
                    continue
                found = PROMQL_METRIC.findall(expr)
                if not found:
                    problems.append(f"{tw}: names no zkfarm metric: {expr}")
                allowed = set(TARGET_LABELS) | target_labels
                unknown = False
                for name, _, matchers in found:
                    m = series.get(name)
                    if m is None:
                        base = re.sub(r"_(bucket|sum|count)$", "", name)
                        hint = ""
                        if base in metrics and metrics[base].recorded:
                            hint = f" ({base} is a {'/'.join(sorted(metrics[base].kinds))})"
                        elif name in metrics and "histogram" in metrics[name].kinds:
                            hint = " (a histogram: use _bucket, _sum or _count)"
                        problems.append(f"{tw}: {name} is not a series zkfarm records{hint}")
                        unknown = True
                        continue
                    used.add(m.name)
                    allowed |= m.labels
                    if name.endswith("_bucket"):
                        allowed.add("le")
                    for label in re.findall(r"([a-zA-Z_]\w*)\s*(?:=~|!~|!=|=)", matchers or ""):
                        if label not in m.labels | TARGET_LABELS | target_labels:
                            problems.append(f"{tw}: {name} has no label {label!r} (it has {sorted(m.labels)})")
                for fn, name in re.findall(r"\b(rate|irate|increase)\s*\(\s*(zkfarm_[a-zA-Z0-9_]+)", expr):
                    m = series.get(name)
                    if m and "gauge" in m.kinds:
                        problems.append(f"{tw}: {fn}() over the gauge {name}")
                grouped = {l.strip() for g in PROMQL_GROUPING.findall(expr) for l in g.split(",") if l.strip()}
                legend = set(re.findall(r"\{\{\s*([a-zA-Z_]\w*)\s*\}\}", t.get("legendFormat") or ""))
                for label in sorted((grouped | legend) - allowed) if not unknown else []:
                    problems.append(f"{tw}: label {label!r} belongs to none of its metrics")
        if len(ids) != len(set(ids)):
            problems.append(f"{rel(f)}: panel ids repeat")
    if not files:
        problems.append("no dashboard under deploy/grafana/dashboards")
    unused = sorted(m.name for m in metrics.values() if m.recorded and m.name not in used)
    note = f"; not shown: {', '.join(unused)}" if unused else ""
    return problems, f"{count} panels over {len(used)} metrics, every name and label recorded by zkfarm{note}"


# ------------------------------------------------------------- Dockerfiles


def dockerfile_lines(path: Path) -> list:
    text = re.sub(r"\\\n", " ", path.read_text())
    return [l.strip() for l in text.splitlines() if l.strip() and not l.strip().startswith("#")]


def check_dockerfiles(compose: dict):
    problems = []
    cargo = (ROOT / "Cargo.toml").read_text()
    want_rust = tuple(int(x) for x in re.search(r'rust-version\s*=\s*"([\d.]+)"', cargo).group(1).split("."))
    cli_toml = (ROOT / "cli" / "Cargo.toml").read_text()
    package = re.search(r'^name\s*=\s*"([^"]+)"', cli_toml, re.M).group(1)
    binary = re.search(r'\[\[bin\]\]\s*name\s*=\s*"([^"]+)"', cli_toml).group(1)
    cudarc = re.search(r'"cuda-(\d+)"', (ROOT / "kernels" / "Cargo.toml").read_text())
    cuda_major = str(int(cudarc.group(1)) // 1000) if cudarc else None
    for image, path in DOCKERFILES.items():
        where = rel(path)
        if not path.exists():
            problems.append(f"{where} is missing")
            continue
        lines = dockerfile_lines(path)
        args = dict(re.findall(r"^ARG\s+(\w+)=(\S+)", "\n".join(lines), re.M))
        stages = [
            re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), m.group(0)), l.split()[1])
            for l in lines
            if l.upper().startswith("FROM ")
        ]
        final = max(i for i, l in enumerate(lines) if l.upper().startswith("FROM "))
        tail = lines[final:]
        build = [l for l in lines[:final] if l.upper().startswith("RUN ") and "cargo build" in l]
        if not build or not all(s in build[0] for s in ("--release", f"-p {package}", "--locked")):
            problems.append(f"{where}: no `cargo build --release --locked -p {package}` before the final stage")
        if not any(f"target/release/{binary}" in l for l in lines[:final]):
            problems.append(f"{where}: the build stage does not take target/release/{binary}")
        rust = next((s for s in stages if s.startswith("rust:")), None)
        m = re.match(r"rust:(\d+)\.(\d+)", rust or "")
        if not m or (int(m.group(1)), int(m.group(2))) < want_rust[:2]:
            problems.append(
                f"{where}: the build image {rust} is older than the workspace's rust-version {'.'.join(map(str, want_rust))}"
            )
        if not any(re.match(r"COPY\s+--from=\S+\s+\S+\s+/usr/local/bin/" + re.escape(binary) + r"$", l) for l in tail):
            problems.append(f"{where}: the final stage does not copy the binary to /usr/local/bin/{binary}")
        if not any(re.fullmatch(r'ENTRYPOINT\s+\[\s*"' + re.escape(binary) + r'"\s*\]', l) for l in tail):
            problems.append(
                f'{where}: the final stage needs ENTRYPOINT ["{binary}"] (compose and the manifests pass only arguments)'
            )
        users = [l.split()[1] for l in tail if l.upper().startswith("USER ")]
        if not users or not re.fullmatch(r"[1-9]\d*(:\d+)?", users[-1]):
            problems.append(f"{where}: the final stage must run as a numeric non-root USER (runAsNonRoot checks it)")
        if not any(l.upper().startswith("ENV ") and "ZKFARM_HOME=/var/lib/zkfarm" in l for l in tail):
            problems.append(f"{where}: the final stage must set ZKFARM_HOME=/var/lib/zkfarm")
        installs = " ".join(l for l in tail if "apt-get install" in l)
        for pkg in ("curl", "ca-certificates"):
            if not re.search(r"(?<![\w-])" + re.escape(pkg) + r"(?![\w-])", installs):
                problems.append(f"{where}: the final stage does not install {pkg} (the health checks use curl)")
        if image == "zkfarm-cuda":
            base = stages[-1]
            if not cuda_major or not re.match(rf"nvidia/cuda:{cuda_major}\.", base):
                problems.append(f"{where}: the base {base} is not CUDA {cuda_major}, which cudarc is built for")
            if not re.search(rf"cuda-nvrtc-{cuda_major}-\d+", installs):
                problems.append(
                    f"{where}: NVRTC (cuda-nvrtc-{cuda_major}-*) is not installed; the cuda engine compiles its kernels with it"
                )
    ignore = (ROOT / ".dockerignore").read_text().split() if (ROOT / ".dockerignore").exists() else []
    for p in ("target", ".gpu", ".nvrtc"):
        if p not in ignore and p + "/" not in ignore:
            problems.append(f".dockerignore does not exclude {p}")
    built = {}
    for name, svc in (compose.get("services") or {}).items():
        b = svc.get("build")
        if isinstance(b, dict) and svc.get("image"):
            built[svc["image"]] = b.get("dockerfile")
    for image, path in DOCKERFILES.items():
        if not any(i.split(":")[0].split("/")[-1] == image and d == rel(path) for i, d in built.items()):
            problems.append(f"no compose service builds {image} from {rel(path)}")
    for f, d in k8s_docs():
        pod, _ = pod_of(d)
        for c in (pod or {}).get("containers", []) + (pod or {}).get("initContainers", []):
            if k8s_is_zkfarm(c) and c["image"] not in built:
                problems.append(
                    f"{rel(f)} {c['name']}: image {c['image']} is none that compose builds ({sorted(built)})"
                )
    return (
        problems,
        f"{', '.join(rel(p) for p in DOCKERFILES.values())} build `{binary}` ({package}); images {', '.join(sorted(built))}",
    )


# ---------------------------------------------------------------- main


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--k8s-version", action="append", help="Kubernetes version(s) to validate against")
    opts = ap.parse_args()
    report = Report()

    report.run("yaml", check_yaml_parses)
    compose = load_yaml_docs(COMPOSE)[0]
    metrics = rust_metrics()
    cli = Cli()
    process_env = rust_process_env()
    report.run("rust-sources", check_sources, metrics, cli, process_env)
    report.run("compose-schema", check_compose_schema)
    report.run("compose", check_compose, cli, compose, process_env)
    report.run("prometheus-compose", check_prometheus_compose, cli, compose)
    report.run("k8s-schema", check_k8s_schema, opts.k8s_version or K8S_VERSIONS)
    report.run("k8s", check_k8s_policy, cli, process_env)
    report.run("prometheus-k8s", check_prometheus_k8s)
    report.run("grafana-provisioning", check_grafana_provisioning, compose)
    labels = prometheus_targets(load_yaml_docs(PROMETHEUS)[0])[1]
    for _, d in k8s_docs():
        if d.get("kind") == "ConfigMap" and "prometheus.yml" in (d.get("data") or {}):
            labels |= prometheus_targets(yaml.safe_load(d["data"]["prometheus.yml"]))[1]
    report.run("grafana-dashboard", check_dashboard, metrics, labels)
    report.run("dockerfiles", check_dockerfiles, compose)

    if report.failed:
        print(f"deploy checks: {report.failed} failed")
        return 1
    print("deploy checks: all passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
