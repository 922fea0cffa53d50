"""The --config.file loader: good files load, every bad one gives one exact file:line:key line."""

import textwrap

import pytest

from minerwatch import config
from minerwatch.detection.process_table import ProcessSettings


def write(tmp_path, text):
    path = tmp_path / "minerwatch.yml"
    path.write_text(textwrap.dedent(text))
    return str(path)


def test_full_config_loads(tmp_path):
    path = write(tmp_path, """\
        process:
          top_k: 3
          max_suspects: 10
          suspect_busy_cores: 0.8
        signatures:
          extra_names: [ourminer]
          extra_patterns: ['--secret-pool-flag']
        allowlist:
          - name: restic
            user: backup
            exe: /usr/bin/restic
          - exe: /usr/bin/ffmpeg
          - sha256: "%s"
        """ % ("ab" * 32))
    cfg = config.load(path)
    assert (cfg.process.top_k, cfg.process.max_suspects, cfg.process.suspect_busy_cores) == (3, 10, 0.8)
    assert cfg.signatures.extra_names == ("ourminer",)
    assert cfg.signatures.extra_patterns == ("--secret-pool-flag",)
    assert [(r.name, r.user, r.exe) for r in cfg.allowlist[:2]] == [("restic", "backup", "/usr/bin/restic"), (None, None, "/usr/bin/ffmpeg")]
    assert cfg.allowlist[0].where == f"{path}:9"


def test_empty_file_is_the_defaults(tmp_path):
    cfg = config.load(write(tmp_path, ""))
    assert cfg.process == ProcessSettings() and cfg.allowlist == ()


@pytest.mark.parametrize(
    "text, message",
    [
        ("proces:\n  top_k: 3\n",
         "{f}:1: proces: unknown key (known: allowlist, antivirus, energy, gpu, network, process, signatures)"),
        ("process:\n  top_k: -1\n", "{f}:2: process.top_k: must be an integer from 0 to 100"),
        ("process:\n  top_k: many\n", "{f}:2: process.top_k: must be an integer from 0 to 100"),
        ("process:\n  suspect_busy_cores: yes\n",
         "{f}:2: process.suspect_busy_cores: must be a number from 0 to 1024"),
        ("process: [1, 2]\n", "{f}:1: process: must be a mapping"),
        ("signatures:\n  extra_patterns:\n    - 'ok'\n    - '(unclosed'\n",
         "{f}:4: signatures.extra_patterns[1]: invalid regular expression: missing ), unterminated subpattern at position 0"),
        ("signatures:\n  extra_patterns: ['(a)\\1']\n",
         "{f}:2: signatures.extra_patterns[0]: not supported by the linear-time matcher (RE2): "
         "invalid escape sequence: \\1"),
        ("signatures:\n  extra_names: xmrig2\n", "{f}:2: signatures.extra_names: must be a list"),
        ("allowlist:\n  - exe: /usr/bin/restic\n  - {}\n",
         "{f}:3: allowlist[1]: an allowlist entry must pin the program with `exe` (an absolute path) or "
         "`sha256`: a name or a user alone can be taken by any process"),
        ("allowlist:\n  - sha256: abc\n", "{f}:2: allowlist[0].sha256: must be 64 hexadecimal characters"),
        ("allowlist:\n  - name: a\n    colour: red\n",
         "{f}:3: allowlist[0].colour: unknown key (known: exe, name, sha256, signals, user)"),
        ("process:\n  top_k: 1\n  top_k: 2\n", "{f}:3: process.top_k: given twice"),
        ("process: {top_k: 1\n", "{f}:2: invalid YAML: expected ',' or '}', but got '<stream end>'"),
    ],
)
def test_bad_config_names_file_line_and_key(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(config.ConfigError) as err:
        config.load(path)
    assert str(err.value) == message.replace("{f}", path)


def test_missing_file(tmp_path):
    with pytest.raises(config.ConfigError) as err:
        config.load(str(tmp_path / "nope.yml"))
    assert str(err.value) == f"{tmp_path / 'nope.yml'}: cannot read: No such file or directory"


# -- hostile files, through the real command line (issue 11, item 8) --------------------------------

import os
import subprocess
import sys

from support.repo import offline

LAUGHS = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{b}: &{b} [{', '.join(['*' + a] * 10)}]\n" for a, b in zip("abcdefgh", "bcdefghi")
) + "process: *i\n"


def minerwatch(*args, timeout=30):
    args = [str(a) for a in args]
    if args[0] in ("serve", "scan"):
        args = [args[0], *offline(args[1:])]
    return subprocess.run([sys.executable, "-m", "minerwatch", *args], capture_output=True, timeout=timeout)


def fifo(tmp_path):
    path = tmp_path / "config.fifo"
    os.mkfifo(path)
    return path


def big_file(tmp_path):
    path = tmp_path / "big.yml"
    with open(path, "wb") as f:  # 50 MB: refused from its size, never parsed
        f.write(b"process:\n  top_k: 1\n")
        f.truncate(50 * 1000 * 1000)
    return path


def just_over_limit(tmp_path):
    path = tmp_path / "over.yml"
    path.write_bytes(b"allowlist:\n" + b"  - {name: x}\n" * ((config.MAX_BYTES - 10) // 14 + 1))
    return path


def content(data: bytes):
    def make(tmp_path):
        path = tmp_path / "bad.yml"
        path.write_bytes(data)
        return path
    return make


HOSTILE = [
    (content(b"process:\n  top_k: 3\n# caf\xe9 latin-1\n"),
     "{f}:3: not UTF-8 text (byte 0xe9); save the file as UTF-8"),
    (content(b"process:\n  top_k: 1\n\x7fELF\x02\x01\x01\x00\x00\x00"), "{f}:3: not a text file: control character \\x7f"),
    (content(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"), "{f}:1: not UTF-8 text (byte 0x89); save the file as UTF-8"),
    (content(b"[" * 5000 + b"]" * 5000), "{f}:1: invalid YAML: nested deeper than 32 levels"),
    (content(b"".join(b" " * i + b"k:\n" for i in range(100))), "{f}:32: invalid YAML: nested deeper than 32 levels"),
    (content(LAUGHS.encode()), "{f}:6: invalid YAML: more than 1000000 nodes once aliases are expanded"),
    (content(b"process: &p {top_k: *p}\n"), "{f}:1: invalid YAML: alias *p refers to a node that contains it"),
    (content(b"process:\n  suspect_busy_cores: .nan\n"),
     "{f}:2: process.suspect_busy_cores: must be a finite number from 0 to 1024, not .nan"),
    (content(b"process:\n  top_min_cpu_cores: -.inf\n"),
     "{f}:2: process.top_min_cpu_cores: must be a finite number from 0 to 1024, not -.inf"),
    (content(b"process:\n  suspect_busy_cores: 1.0e+999\n"),
     "{f}:2: process.suspect_busy_cores: must be a finite number from 0 to 1024, not 1.0e+999"),
    (content(b"process:\n  max_suspects: 100000\n"), "{f}:2: process.max_suspects: must be an integer from 0 to 1000"),
    (content(b"process:\n  cmdline_max_length: 8\n"),
     "{f}:2: process.cmdline_max_length: must be an integer from 16 to 4096"),
    (content(b"process:\n  top_k: " + b"9" * 5000 + b"\n"),
     "{f}:2: process.top_k: cannot read the value: Exceeds the limit (4300 digits) for integer string conversion: "
     "value has 5000 digits; use sys.set_int_max_str_digits() to increase the limit"),
    (content(b"process:\n  top_k: 2024-13-01\n"), "{f}:2: process.top_k: cannot read the value: month must be in 1..12"),
    (content(b"process:\n  ? [a, b]\n  : 1\n"), "{f}:2: process: keys must be plain strings"),
    (content(b'"pro\\ncess\\e[31m": 1\n'),
     "{f}:1: pro\\ncess\\x1b[31m: unknown key (known: allowlist, antivirus, energy, gpu, network, process, signatures)"),
    (content(b"signatures:\n  extra_patterns: ['(a+)+\\1']\n"),
     "{f}:2: signatures.extra_patterns[0]: not supported by the linear-time matcher (RE2): invalid escape sequence: \\1"),
    (content(b"a: 1\n---\nb: 2\n"), "{f}:2: invalid YAML: expected a single document in the stream, but found another document"),
    (fifo, "{f}: not a regular file"),
    (big_file, "{f}: larger than the limit of 1024 KiB"),
    (just_over_limit, "{f}: larger than the limit of 1024 KiB"),
]


@pytest.mark.parametrize("make, message", HOSTILE)
def test_hostile_config_is_one_line_and_exit_2(tmp_path, make, message):
    path = make(tmp_path)
    expected = f"minerwatch: error: {message.format(f=path)}\n"
    for command in (["scan", "--interval=0"], ["serve", "--web.listen-address=127.0.0.1:0"]):
        result = minerwatch(*command, f"--config.file={path}")
        assert (result.returncode, result.stderr.decode()) == (2, expected), command


def test_a_device_is_not_read(tmp_path):
    result = minerwatch("scan", "--config.file=/dev/zero")
    assert (result.returncode, result.stderr.decode()) == (2, "minerwatch: error: /dev/zero: not a regular file\n")


def test_web_config_goes_through_the_same_loader(tmp_path):
    path = fifo(tmp_path)
    result = minerwatch("serve", "--web.listen-address=127.0.0.1:0", f"--web.config.file={path}")
    assert (result.returncode, result.stderr.decode()) == (2, f"minerwatch: error: {path}: not a regular file\n")


def test_largest_accepted_file_and_byte_order_mark(tmp_path):
    entry = b"  - {exe: /x}\n"
    path = tmp_path / "max.yml"
    path.write_bytes(b"\xef\xbb\xbfallowlist:\n" + entry * ((config.MAX_BYTES - 14) // len(entry)))
    assert os.path.getsize(path) <= config.MAX_BYTES
    assert len(config.load(str(path)).allowlist) == (config.MAX_BYTES - 14) // len(entry)


def test_aliases_within_bounds_still_work(tmp_path):
    path = write(tmp_path, """\
        signatures:
          extra_names: &names [ourminer, theirminer]
        allowlist:
          - &backup {exe: /usr/bin/restic, user: backup}
          - *backup
        """)
    cfg = config.load(path)
    assert cfg.signatures.extra_names == ("ourminer", "theirminer") and len(cfg.allowlist) == 2


# -- one settings path (issue 12 item 1) -----------------------------------------------------------
def test_an_empty_section_means_the_defaults_in_every_area(tmp_path):
    path = write(tmp_path, "".join(f"{name}:\n" for name in config.SECTIONS))
    assert config.load(path) == config.Config(file=path)


def test_settings_are_frozen(tmp_path):
    import dataclasses

    cfg = config.load(write(tmp_path, "process: {top_k: 3}\ngpu: {init_retry_seconds: 5}\n"))
    for area, key in (("process", "top_k"), ("gpu", "init_retry_seconds"), ("network", "sniffer"),
                      ("antivirus", "interval"), ("energy", "cpu_watts_per_core"), ("signatures", "extra_names")):
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(getattr(cfg, area), key, None)


def test_flags_override_the_file_and_the_table_gets_the_result(tmp_path):
    from minerwatch.app import Options, build_context

    path = write(tmp_path, "process: {top_k: 3, max_suspects: 7, suspect_busy_cores: 0.8}\n")
    context = build_context(Options(config_file=path, top_k=2))
    assert (context.config.process.top_k, context.config.process.max_suspects) == (2, 7)
    assert context.config.process.suspect_busy_cores == 0.8
    assert context.processes.settings is context.config.process
    assert config.load(path).process.top_k == 3  # the file's own settings are left as read
