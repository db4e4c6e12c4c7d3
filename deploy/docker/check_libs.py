#!/usr/bin/env python3
"""Checks that deploy/docker/Dockerfile's runtime stages hold every shared
library the Joule binaries load.

    deploy/docker/check_libs.py [--dockerfile PATH] [-v] BINARY...

Each binary goes to a stage by its name: joule-scheduler and joulectl to the
`scheduler` stage, joule-agent to the `agent` stage. A stage's runtime
packages are the lines between "# runtime-packages: STAGE begin" and
"# runtime-packages: STAGE end" in the Dockerfile (plus those of the stage it
is FROM, when that is another stage).

For every NEEDED soname of a binary (read from its ELF dynamic section, and
its program interpreter), resolved the way the loader does on this machine
(RPATH/RUNPATH, then `ldconfig -p`), the file must be owned (`dpkg-query -S`,
trying both the /lib and the /usr/lib spelling of merged-usr paths) by a
package the stage installs or by a package of the base image. Further
failures: a soname that resolves nowhere, a file no Debian package owns, a
listed package that is not installed here (its files cannot be checked), and
a listed package that no binary of the stage needs (dead weight; checked only
when every binary of the stage was given).

The base image's package set is an approximation computed from this
machine's dpkg database, not from the image: debian:12-slim is a minbase
debootstrap, i.e. the packages of Priority "required", the Essential ones and
apt, with everything they depend on. So the set here is the packages whose
Priority is required or whose Essential is yes, plus apt, closed over their
Depends and Pre-Depends as installed on this machine (for an alternative
"a | b", the first one installed here). This holds on a Debian 12 machine,
whose libraries have the same sonames and owners as the image's. The stages'
FROM lines are checked to be Debian 12 slim (directly, or through the default
of an ARG such as AGENT_BASE) so that the model applies.

Prints one line per binary and exits 1 on any problem (2 on bad usage).
Standard library only; needs dpkg-query and ldconfig (Debian).
"""

import argparse
import os
import re
import shutil
import struct
import subprocess
import sys

HERE = os.path.dirname(os.path.realpath(__file__))
DEFAULT_DOCKERFILE = os.path.join(HERE, "Dockerfile")

STAGE_OF = {
    "joule-scheduler": "scheduler",
    "joulectl": "scheduler",
    "joule-agent": "agent",
}

# Base images the base-package model describes.
SLIM_IMAGE = re.compile(r"^(docker\.io/)?(library/)?debian:(12(\.\d+)?|bookworm(-\d{8})?)-slim(@sha256:[0-9a-f]{64})?$")
PACKAGE_NAME = re.compile(r"^[a-z0-9][a-z0-9+.-]+$")
MARKER = re.compile(r"^\s*#\s*runtime-packages:\s*(\S+)\s+(begin|end)\s*$")


class CheckError(Exception):
    """A problem that stops the check (bad Dockerfile, missing tool)."""


# --------------------------------------------------------------------------
# ELF


EM_X86_64 = 62
EM_AARCH64 = 183
# The architecture tag `ldconfig -p` prints for a library of each kind.
LDCONFIG_ARCH = {(2, EM_X86_64): "x86-64", (2, EM_AARCH64): "AArch64"}


class Elf:
    def __init__(self, path):
        self.path = path
        with open(path, "rb") as f:
            data = f.read()
        if data[:4] != b"\x7fELF":
            raise CheckError(f"{path}: not an ELF file")
        self.elf_class = data[4]
        order = {1: "<", 2: ">"}.get(data[5])
        if self.elf_class not in (1, 2) or order is None:
            raise CheckError(f"{path}: unsupported ELF class or byte order")
        if self.elf_class == 2:
            header = struct.unpack_from(order + "HHIQQQIHHHHHH", data, 16)
        else:
            header = struct.unpack_from(order + "HHIIIIIHHHHHH", data, 16)
        (_, self.machine, _, _, phoff, shoff, _, _, phentsize, phnum, shentsize, shnum, _) = header
        self.interpreter = None
        for i in range(phnum):
            off = phoff + i * phentsize
            if self.elf_class == 2:
                p_type, _, p_offset, _, _, p_filesz = struct.unpack_from(order + "IIQQQQ", data, off)
            else:
                p_type, p_offset, _, _, p_filesz = struct.unpack_from(order + "IIIII", data, off)
            if p_type == 3:  # PT_INTERP
                self.interpreter = data[p_offset:p_offset + p_filesz].split(b"\0")[0].decode()
        sections = []
        for i in range(shnum):
            off = shoff + i * shentsize
            if self.elf_class == 2:
                fields = struct.unpack_from(order + "IIQQQQIIQQ", data, off)
            else:
                fields = struct.unpack_from(order + "IIIIIIIIII", data, off)
            sections.append(fields)  # name, type, flags, addr, offset, size, link, ...
        dynamic = [s for s in sections if s[1] == 6]  # SHT_DYNAMIC
        self.needed, self.rpath, self.runpath = [], [], []
        if not dynamic:
            if not sections:
                raise CheckError(f"{path}: no section headers, cannot read its dynamic section")
            return  # static binary
        _, _, _, _, dyn_off, dyn_size, link, _, _, _ = dynamic[0]
        str_off = sections[link][4]

        def string(offset):
            end = data.index(b"\0", str_off + offset)
            return data[str_off + offset:end].decode()

        entry = struct.Struct(order + ("qQ" if self.elf_class == 2 else "iI"))
        for off in range(dyn_off, dyn_off + dyn_size, entry.size):
            tag, value = entry.unpack_from(data, off)
            if tag == 0:  # DT_NULL
                break
            if tag == 1:  # DT_NEEDED
                self.needed.append(string(value))
            elif tag == 15:  # DT_RPATH
                self.rpath += string(value).split(":")
            elif tag == 29:  # DT_RUNPATH
                self.runpath += string(value).split(":")

    def ldconfig_arch(self):
        arch = LDCONFIG_ARCH.get((self.elf_class, self.machine))
        if arch is None:
            raise CheckError(f"{self.path}: unsupported architecture (ELF machine {self.machine})")
        return arch


# --------------------------------------------------------------------------
# This machine: the loader cache and dpkg


def find_tool(name):
    # Bazel's test PATH has no /usr/sbin, where ldconfig lives.
    found = shutil.which(name)
    if found:
        return found
    for directory in ("/usr/sbin", "/sbin", "/usr/bin", "/bin"):
        candidate = os.path.join(directory, name)
        if os.access(candidate, os.X_OK):
            return candidate
    raise CheckError(f"{name} not found (this check needs a Debian machine)")


def run(argv):
    result = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True)
    return result.returncode, result.stdout


def ldconfig_cache():
    """soname -> [(flags, path)] in the cache's order (the loader's)."""
    rc, out = run([find_tool("ldconfig"), "-p"])
    if rc != 0:
        raise CheckError("ldconfig -p failed")
    cache = {}
    for line in out.splitlines():
        m = re.match(r"^\s+(\S+) \(([^)]*)\) => (.+)$", line)
        if m:
            flags = {f.strip() for f in m.group(2).split(",")}
            cache.setdefault(m.group(1), []).append((flags, m.group(3).strip()))
    return cache


def merged_usr_twin(path):
    """The other spelling of a path under merged /usr (/lib/x <-> /usr/lib/x)."""
    for top in ("/lib", "/lib32", "/lib64", "/libx32", "/bin", "/sbin"):
        if path.startswith(top + "/"):
            return "/usr" + path
        if path.startswith("/usr" + top + "/"):
            return path[len("/usr"):]
    return None


def owners_of(paths):
    """path -> [package] for the paths dpkg knows (one dpkg-query call)."""
    paths = sorted(set(paths))
    if not paths:
        return {}
    _, out = run([find_tool("dpkg-query"), "-S"] + paths)
    owners = {}
    for line in out.splitlines():
        if line.startswith("diversion "):
            continue
        m = re.match(r"^(.+?): (/.*)$", line)
        if m:
            packages = [p.strip().split(":")[0] for p in m.group(1).split(",")]
            owners.setdefault(m.group(2), []).extend(packages)
    return owners


def package_database():
    """package -> (priority, essential, provides, depends) of installed packages."""
    fmt = "${Package}\\t${Status}\\t${Priority}\\t${Essential}\\t${Provides}\\t${Pre-Depends}\\t${Depends}\\n"
    rc, out = run([find_tool("dpkg-query"), "-W", "-f=" + fmt])
    if rc != 0:
        raise CheckError("dpkg-query -W failed")
    db = {}
    for line in out.splitlines():
        fields = line.split("\t")
        if len(fields) != 7 or not fields[1].endswith(" installed"):
            continue
        name, _, priority, essential, provides, predepends, depends = fields
        old = db.get(name)  # several architectures of one package: merge
        deps = ", ".join(d for d in (predepends, depends) if d)
        if old:
            deps = ", ".join(d for d in (old[3], deps) if d)
            provides = ", ".join(p for p in (old[2], provides) if p)
        db[name] = (priority, essential, provides, deps)
    return db


def dependency_names(field):
    """'a (>= 1) | b:any, c' -> [['a', 'b'], ['c']]."""
    groups = []
    for group in field.split(","):
        names = [re.split(r"[\s(:\[<]", alt.strip(), 1)[0] for alt in group.split("|")]
        names = [n for n in names if n]
        if names:
            groups.append(names)
    return groups


def base_packages(db):
    """The approximate package set of debian:12-slim (see the module doc)."""
    providers = {}
    for name, (_, _, provides, _) in db.items():
        for group in dependency_names(provides):
            providers.setdefault(group[0], []).append(name)
    todo = [n for n, (priority, essential, _, _) in db.items() if priority == "required" or essential == "yes"]
    todo.append("apt")
    base = set()
    while todo:
        name = todo.pop()
        if name in base or name not in db:
            continue
        base.add(name)
        for alternatives in dependency_names(db[name][3]):
            chosen = next((a for a in alternatives if a in db), None)
            if chosen is None:
                chosen = next((providers[a][0] for a in alternatives if a in providers), None)
            if chosen is not None:
                todo.append(chosen)
    return base


# --------------------------------------------------------------------------
# The Dockerfile


class Stage:
    def __init__(self, name, image):
        self.name = name
        self.image = image  # what FROM names, ARGs expanded
        self.packages = []  # its own runtime-packages block
        self.has_block = False


def expand(text, args):
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args.get(m.group(1) or m.group(2), ""), text)


def parse_dockerfile(path):
    """name -> Stage. Raises CheckError on a malformed runtime-packages block."""
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    global_args, stages, current, block = {}, {}, None, None
    for number, line in enumerate(lines, 1):
        where = f"{path}:{number}"
        marker = MARKER.match(line)
        if marker:
            name, edge = marker.groups()
            if edge == "begin":
                if block is not None:
                    raise CheckError(f"{where}: runtime-packages block {name} begins inside block {block.name}")
                if current is None or current.name != name:
                    raise CheckError(f"{where}: runtime-packages block {name} is not in stage {name}")
                if current.has_block:
                    raise CheckError(f"{where}: a second runtime-packages block for stage {name}")
                block = current
                block.has_block = True
            else:
                if block is None or block.name != name:
                    raise CheckError(f"{where}: runtime-packages {name} end without its begin")
                block = None
            continue
        if block is not None:
            text = line.strip()
            if text.startswith("#") or not text:
                continue
            if text.endswith("\\"):
                text = text[:-1]
            for word in text.split():
                if not PACKAGE_NAME.match(word):
                    raise CheckError(f"{where}: {word!r} in runtime-packages {block.name} is not a package name")
                block.packages.append(word)
            continue
        m = re.match(r"^\s*ARG\s+(\w+)(?:=(\S*))?", line, re.I)
        if m and current is None:
            global_args[m.group(1)] = (m.group(2) or "").strip("\"'")
            continue
        m = re.match(r"^\s*FROM\s+(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?\s*$", line, re.I)
        if m:
            name = (m.group(2) or f"#{len(stages)}").lower()
            current = stages[name] = Stage(name, expand(m.group(1), global_args))
    if block is not None:
        raise CheckError(f"{path}: runtime-packages block {block.name} has no end")
    return stages


def stage_packages(stages, name):
    """(packages the stage installs, its base image, whether it has a
    runtime-packages block), following FROM <another stage>."""
    packages, seen, has_block = [], set(), False
    while name in stages and name not in seen:
        seen.add(name)
        stage = stages[name]
        packages = stage.packages + packages
        has_block = has_block or stage.has_block
        image = stage.image
        name = image.lower()
    return packages, image, has_block


# --------------------------------------------------------------------------
# The check


def resolve(elf, soname, cache):
    """Path the loader would use for soname, or None."""
    if "/" in soname:
        return soname if os.path.exists(soname) else None
    origin = os.path.dirname(os.path.realpath(elf.path))
    dirs = elf.runpath if elf.runpath else elf.rpath
    for directory in dirs:
        directory = directory.replace("${ORIGIN}", origin).replace("$ORIGIN", origin)
        candidate = os.path.join(directory, soname)
        if directory and os.path.exists(candidate):
            return candidate
    arch = elf.ldconfig_arch()
    for flags, path in cache.get(soname, []):
        if arch in flags:
            return path
    return None


def candidates(path):
    """The spellings of a library's path to ask dpkg about, best first."""
    real = os.path.realpath(path)
    out = []
    for p in (real, merged_usr_twin(real), path, merged_usr_twin(path)):
        if p and p not in out:
            out.append(p)
    return out


def check(binaries, dockerfile, verbose=False, out=sys.stdout):
    """Returns the number of problems; prints the report."""
    problems = []

    def problem(text):
        problems.append(text)
        print(text, file=out)

    stages = parse_dockerfile(dockerfile)
    db = package_database()
    base = base_packages(db)
    cache = ldconfig_cache()

    # Read every binary and resolve its libraries first, so that dpkg is asked once.
    loaded = []
    for path in binaries:
        elf = Elf(path)
        libs = [(soname, resolve(elf, soname, cache)) for soname in elf.needed]
        if elf.interpreter:
            libs.append((elf.interpreter, elf.interpreter if os.path.exists(elf.interpreter) else None))
        loaded.append((path, elf, libs))
    owners = owners_of(c for _, _, libs in loaded for _, p in libs if p for c in candidates(p))

    def owner(path):
        for c in candidates(path):
            if c in owners:
                return owners[c]
        return []

    needed_by_stage, given = {}, {}
    checked_stages = {}
    for path, elf, libs in loaded:
        name = os.path.basename(path)
        stage_name = STAGE_OF[name]
        given.setdefault(stage_name, set()).add(name)
        if stage_name not in checked_stages:
            if stage_name not in stages:
                raise CheckError(f"{dockerfile}: no stage {stage_name} (for {name})")
            listed, image, has_block = stage_packages(stages, stage_name)
            if not has_block:
                raise CheckError(f"{dockerfile}: stage {stage_name} has no runtime-packages block")
            if not SLIM_IMAGE.match(image):
                problem(f"{stage_name} stage: its base {image!r} is not debian:12-slim, "
                        "which the base-package model of this check assumes")
            for package in listed:
                if package not in db:
                    problem(f"{stage_name} stage: {package} is not installed on this machine, "
                            "so its libraries cannot be checked")
            checked_stages[stage_name] = set(listed)
        listed = checked_stages[stage_name]
        needed = needed_by_stage.setdefault(stage_name, set())
        bad = 0
        for soname, resolved in libs:
            if resolved is None:
                problem(f"{name}: {soname} cannot be resolved on this machine (not in ldconfig -p"
                        + (", RPATH or RUNPATH" if elf.rpath or elf.runpath else "") + ")")
                bad += 1
                continue
            packages = owner(resolved)
            needed.update(packages)
            if not packages:
                problem(f"{name}: {soname} ({os.path.realpath(resolved)}) belongs to no Debian package")
                bad += 1
                continue
            if verbose:
                where = [w for w, s in (("stage", listed), ("base", base)) if set(packages) & s] or ["MISSING"]
                print(f"  {name}: {soname} -> {resolved} ({', '.join(packages)}) [{'+'.join(where)}]", file=out)
            if not set(packages) & (listed | base):
                problem(f"{name}: {soname} (package {', '.join(packages)}) is installed by neither "
                        f"the {stage_name} stage nor the base image")
                bad += 1
        if not bad:
            print(f"{name}: {len(elf.needed)} libraries, all from packages the {stage_name} stage "
                  "installs or the base image holds", file=out)

    for stage_name, listed in sorted(checked_stages.items()):
        all_binaries = {b for b, s in STAGE_OF.items() if s == stage_name}
        if given[stage_name] != all_binaries:
            missing = ", ".join(sorted(all_binaries - given[stage_name]))
            print(f"{stage_name} stage: unused packages not checked (not given: {missing})", file=out)
            continue
        for package in sorted(listed - needed_by_stage[stage_name]):
            problem(f"{stage_name} stage: {package} is listed but no binary of the stage needs it")
    return len(problems)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dockerfile", default=DEFAULT_DOCKERFILE)
    parser.add_argument("-v", "--verbose", action="store_true", help="print each library's path and package")
    parser.add_argument("binaries", nargs="+", metavar="BINARY")
    args = parser.parse_args(argv)
    for path in args.binaries:
        if os.path.basename(path) not in STAGE_OF:
            parser.error(f"{path}: unknown binary (expected one of {', '.join(sorted(STAGE_OF))})")
        if not os.path.isfile(path):
            parser.error(f"{path}: no such file")
    try:
        problems = check(args.binaries, args.dockerfile, args.verbose)
    except (CheckError, OSError) as e:
        print(f"check_libs: {e}", file=sys.stderr)
        return 1
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
