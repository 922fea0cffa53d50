"""Tests of minerwatch.detection.redact: secrets in command lines never reach /metrics, `scan` or a log."""

from __future__ import annotations

import pytest

from minerwatch.detection.redact import redact_cmdline, redact_text

XMR = "48edfHu7V9Z84YzzMa6fUueoELZ9ZRXq9VetWzYGzKt52XU5xvqgzYnDK9URnRoJMk1j8nLwEVsaSWJ4fhdUyZijBGUicoD"


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["xmrig", "-o", "pool.example.net:3333", "-u", XMR, "-p", "rig1"],
         f"xmrig -o pool.example.net:3333 -u {XMR} -p <redacted>"),
        (["xmrig", "--pass", "x", "--pass=y", "--password=z", "--user=w"],
         "xmrig --pass <redacted> --pass=<redacted> --password=<redacted> --user=w"),
        (["tool", "--token", "abc", "--api-key=def", "--apikey", "ghi", "--secret", "jkl", "-k", "keep"],
         "tool --token <redacted> --api-key=<redacted> --apikey <redacted> --secret <redacted> -k keep"),
        (["app", "DB_PASSWORD=hunter2", "api_key=1", "ApiKey=2", "SECRET_X=3", "token=4", "name=ok"],
         "app DB_PASSWORD=<redacted> api_key=<redacted> ApiKey=<redacted> SECRET_X=<redacted> token=<redacted> name=ok"),
        (["git", "clone", "https://alice:ghp_abc123@github.com/org/repo.git"],
         "git clone https://alice:<redacted>@github.com/org/repo.git"),
        (["ethminer", "-P", "stratum1+tcp://0xabc.rig:pw@eth.example.net:4444"],
         "ethminer -P stratum1+tcp://0xabc.rig:<redacted>@eth.example.net:4444"),
        (["curl", "-H", "Authorization: Bearer eyJhbGciOi.x.y", "https://api.example.com"],
         "curl -H Authorization: <redacted> https://api.example.com"),
        (["curl", "-H", "Cookie: session=abc; other=def", "https://x.example"],
         "curl -H Cookie: <redacted> https://x.example"),
        (["sh", "-c", "curl -H 'Authorization: Bearer abc.def' https://x.example"],
         "sh -c curl -H 'Authorization: Bearer <redacted>' https://x.example"),
        (["curl", "-u", "admin:pw", "https://x.example"], "curl -u admin:<redacted> https://x.example"),
        (["curl", "-k", "https://x.example"], "curl -k https://x.example"),
        (["7z", "a", "-pS3cret", "archive.7z", "docs/"], "7z a -p<redacted> archive.7z docs/"),
        (["mysql", "-u", "root", "-pSecret123", "db"], "mysql -u root -p<redacted> db"),
        (["sudo", "-u", "root", "mysqldump", "-pSecret", "db"], "sudo -u root mysqldump -p<redacted> db"),
        (["openssl", "enc", "-aes-256-cbc", "-k", "pw", "-pass", "pass:hunter2", "-passin", "env:X"],
         "openssl enc -aes-256-cbc -k <redacted> -pass <redacted> -passin <redacted>"),
        (["zip", "-P", "pw", "a.zip", "f"], "zip -P <redacted> a.zip f"),
        (["sshpass", "-p", "pw", "ssh", "host"], "sshpass -p <redacted> ssh host"),
        (["keytool", "-list", "-storepass", "changeit"], "keytool -list -storepass <redacted>"),
        (["java", "-Djavax.net.ssl.keyStorePassword=changeit", "-jar", "a.jar"],
         "java -Djavax.net.ssl.keyStorePassword=<redacted> -jar a.jar"),
        (["app", "https://h.example/cb?code=1&access_token=abc&state=x"],
         "app https://h.example/cb?code=1&access_token=<redacted>&state=x"),
        (["minerd", "-a", "scrypt", "-O", "user.worker:password"], "minerd -a scrypt -O user.worker:<redacted>"),
        (["EthDcrMiner64.exe", "-ewal", "0xabc", "-epsw", "x"], "EthDcrMiner64.exe -ewal 0xabc -epsw <redacted>"),
        (["smbclient", "//srv/share", "-U", "bob%pw"], "smbclient //srv/share -U bob%<redacted>"),
        (["sh", "-c", "xmrig -o p.example:1 -p secret"], "sh -c xmrig -o p.example:1 -p <redacted>"),
        (["unknown", "-p", "maybe-secret"], "unknown -p <redacted>"),
        (["curl", "--user=bob:pw", "-ualice:pw2", "https://x.example"],
         "curl --user=bob:<redacted> -ualice:<redacted> https://x.example"),
        (["mount", "-t", "cifs", "-o", "username=bob,password=pw,vers=3.0", "//srv/s", "/mnt"],
         "mount -t cifs -o username=bob,password=<redacted> //srv/s /mnt"),
        (["redis-cli", "-h", "cache", "-a", "pw", "ping"], "redis-cli -h cache -a <redacted> ping"),
        (["xfreerdp", "/v:host", "/u:bob", "/p:pw"], "xfreerdp /v:host /u:bob /p:<redacted>"),
    ],
)
def test_redact(argv, expected):
    assert redact_cmdline(argv) == expected


@pytest.mark.parametrize(
    "argv",
    [
        ["gcc", "-p", "-pg", "-pthread", "-pipe", "-O2", "-o", "prog", "prog.c"],
        ["x86_64-linux-gnu-gcc-12", "-p", "main.c"],
        ["clang-16", "-p", "main.c"],
        ["ps", "-p", "1234", "-o", "pid,comm"],
        ["mkdir", "-p", "/tmp/a/b"],
        ["cp", "-p", "a", "b"],
        ["ssh", "-p", "2222", "host.example.com"],
        ["docker", "run", "-p", "127.0.0.1:8080:80", "nginx"],
        ["patch", "-p1", "-i", "fix.diff"],
        ["journalctl", "-p", "err", "-b"],
        ["iptables", "-A", "INPUT", "-p", "tcp", "--dport", "22", "-j", "ACCEPT"],
        ["unzip", "-p", "a.zip", "f.txt"],
        ["node", "-p", "process.version"],
        ["rails", "server", "-p", "3000"],
        ["strace", "-f", "-p", "4242"],
        ["python3", "-m", "http.server", "8000"],
        ["tar", "-cpzf", "backup.tgz", "/etc"],
        ["java", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=200", "-jar", "app.jar"],
        ["ffmpeg", "-i", "in.mp4", "-c:v", "libx264", "-preset", "slow", "out.mp4"],
        ["curl", "-o", "file", "https://example.com/a"],
        ["xz", "-T0", "-9", "big.tar"],
        ["sudo", "mkdir", "-p", "/srv/x"],
        ["bash", "-c", "ps -p 1 -o comm="],
        ["pytest", "-p", "no:cacheprovider", "tests"],
        ["cargo", "build", "-p", "mycrate"],
        ["mount", "-o", "remount,rw", "/"],
        ["redis-cli", "-h", "cache", "-p", "6379", "ping"],
        ["xz", "-d", "/tmp/p:1/file.xz"],
    ],
)
def test_redact_leaves_ordinary_commands_alone(argv):
    assert redact_cmdline(argv) == " ".join(argv)


def test_redact_truncates():
    argv = ["xmrig", "-p", "secret"] + ["--opt"] * 200
    out = redact_cmdline(argv, max_length=64)
    assert len(out) == 64 and out.endswith("...") and out.startswith("xmrig -p <redacted>")
    assert redact_cmdline(["a", "b"], max_length=64) == "a b"
    assert redact_cmdline(["x" * 100], max_length=20) == "x" * 17 + "..."


def test_redact_never_leaks_across_forms():
    secret = "Zq9secretZq9"
    forms = [
        ["tool", "--password", secret], ["tool", f"--password={secret}"], ["tool", f"PASS={secret}"],
        ["tool", f"https://u:{secret}@h.example/"], ["tool", "-H", f"X-Api-Key: {secret}"],
        ["tool", "-H", f"Authorization: token {secret}"], ["tool", f"--db-pass={secret}"],
        ["mysql", f"-p{secret}"], ["xmrig", "-p", secret], ["tool", "--client-secret", secret],
        ["tool", f"Bearer {secret}"], ["tool", f"--access-token={secret}"], ["tool", "--key", secret],
    ]
    for argv in forms:
        assert secret not in redact_cmdline(argv), argv


def test_redact_empty():
    assert redact_cmdline([]) == ""


# Each of these leaked before redaction had its own module (issue 11 item 9).
@pytest.mark.parametrize(
    "argv, expected",
    [
        (["docker", "login", "-u", "bob", "-p", "T0ken", "registry.example"],
         "docker login -u bob -p <redacted> registry.example"),
        (["podman", "login", "-p", "12345", "registry.example"], "podman login -p <redacted> registry.example"),
        (["ldapsearch", "-x", "-D", "cn=admin,dc=x", "-w", "S3cret", "-b", "dc=x"],
         "ldapsearch -x -D cn=admin,dc=x -w <redacted> -b dc=x"),
        (["ldappasswd", "-D", "cn=a", "-w", "bindpw", "-a", "oldpw", "-s", "newpw", "uid=bob"],
         "ldappasswd -D cn=a -w <redacted> -a <redacted> -s <redacted> uid=bob"),
        (["plink", "-ssh", "-l", "bob", "-pw", "S3cret", "host.example"],
         "plink -ssh -l bob -pw <redacted> host.example"),
        (["pscp", "-pw", "S3cret", "f", "bob@h:/tmp"], "pscp -pw <redacted> f bob@h:/tmp"),
        (["sqlplus", "scott/tiger@db", "@report.sql"], "sqlplus scott/<redacted>@db @report.sql"),
        (["sqlplus", "-s", "sys/S3cret", "as", "sysdba"], "sqlplus -s sys/<redacted> as sysdba"),
        (["expdp", "userid=scott/tiger@db", "dumpfile=x.dmp", "logfile=dir/x.log"],
         "expdp userid=scott/<redacted>@db dumpfile=x.dmp logfile=dir/x.log"),
        (["htpasswd", "-b", "/etc/nginx/.htpasswd", "bob", "S3cret"],
         "htpasswd -b /etc/nginx/.htpasswd bob <redacted>"),
        (["htpasswd", "-nbB", "bob", "S3cret"], "htpasswd -nbB bob <redacted>"),
        (["htpasswd", "-cbC", "10", "f", "bob", "S3cret"], "htpasswd -cbC 10 f bob <redacted>"),
        (["app", '{"pass":"S3cret","user":"bob"}'], 'app {"pass":"<redacted>","user":"bob"}'),
        (["curl", "-d", '{"username": "bob", "password": "two words"}', "https://x.example"],
         'curl -d {"username": "bob", "password": "<redacted>"} https://x.example'),
        (["sh", "-c", 'curl -d {\\"token\\":\\"S3cret\\"} https://x.example'],
         'sh -c curl -d {\\"token\\":\\"<redacted>\\"} https://x.example'),
        (["python3", "-c", "login({'api_key': 'S3cret'})"], "python3 -c login({'api_key': '<redacted>'})"),
        (["app", '{"pin":1234,"secret":987654}'], 'app {"pin":1234,"secret":<redacted>}'),
        (["tool", "--password", "--x"], "tool --password <redacted>"),
        (["tool", "--pass", "-Looks-like-a-flag", "--verbose"], "tool --pass <redacted> --verbose"),
        (["tool", "-P", "S3cret"], "tool -P <redacted>"),
        (["sqlcmd", "-S", "db", "-U", "sa", "-P", "S3cret"], "sqlcmd -S db -U sa -P <redacted>"),
        (["bcp", "t", "out", "f", "-U", "sa", "-P", "S3cret"], "bcp t out f -U sa -P <redacted>"),
        (["ipmitool", "-H", "bmc", "-U", "admin", "-P", "S3cret", "power", "status"],
         "ipmitool -H bmc -U admin -P <redacted> power status"),
        (["ssh-keygen", "-p", "-P", "old", "-N", "new", "-f", "key"], "ssh-keygen -p -P <redacted> -N <redacted> -f key"),
        (["odbc", "DRIVER=x;UID=sa;PWD=S3cret;"], "odbc DRIVER=x;UID=sa;PWD=<redacted>"),
        (["xmrig", "-O", "wallet.rig:S3cret"], "xmrig -O wallet.rig:<redacted>"),
        # a separator ends a command: the next command's program is not taken for a password
        (["sh", "-c", "tool --password ; mysql -pS3cret db"], "sh -c tool --password ; mysql -p<redacted> db"),
    ],
)
def test_redact_forms_that_leaked(argv, expected):
    assert redact_cmdline(argv, max_length=4096) == expected


# Options that look like password options but are something else; redacting them would lose
# evidence and noise up the series.
@pytest.mark.parametrize(
    "argv",
    [
        ["grep", "-P", r"\d+", "file.txt"],
        ["xargs", "-P", "4", "-n", "1", "gzip"],
        ["scp", "-P", "2222", "f", "h:/tmp"],
        ["mysql", "-h", "db", "-P", "3306", "-u", "app"],
        ["mvn", "-P", "release", "package"],
        ["man", "-P", "cat", "ls"],
        ["systemctl", "show", "-P", "MainPID", "ssh"],
        ["cmake", "-P", "script.cmake"],
        ["strace", "-P", "/etc/hosts", "cat", "/etc/hosts"],
        ["find", "-P", ".", "-name", "x"],
        ["rsync", "-aP", "src/", "dst/"],
        ["docker", "run", "-P", "nginx"],
        ["docker", "ps", "-p"],
        ["ldapsearch", "-x", "-H", "ldap://dc", "-b", "dc=x", "(uid=bob)"],
        ["sqlplus", "/", "as", "sysdba"],
        ["sqlplus", "-s", "/nolog", "@dir/report.sql"],
        ["rman", "target", "/"],
        ["htpasswd", "-D", "/etc/nginx/.htpasswd", "bob"],
        ["jq", '{"name": .name, "id": .id}', "f.json"],
        ["app", '{"user":"bob","host":"h.example"}'],
        ["plink", "-ssh", "-P", "22", "host.example"],
    ],
)
def test_redact_leaves_look_alikes_alone(argv):
    assert redact_cmdline(argv, max_length=4096) == " ".join(argv)


def test_redact_text_is_what_signatures_quote():
    assert redact_text("stratum+tcp://w.rig:S3cret@pool.example:3333") == "stratum+tcp://w.rig:<redacted>@pool.example:3333"
    assert redact_text('{"pass":"x"}') == '{"pass":"<redacted>"}'


def test_redact_is_linear_on_hostile_lines():
    """Quote-heavy and '='-heavy arguments of 100k characters take milliseconds, not minutes."""
    import time

    hostile = ['"' * 100_000, "a=" * 50_000, '{"pass":' * 12_000, "\\\"" * 30_000, "-p " * 30_000]
    start = time.perf_counter()
    for arg in hostile:
        redact_cmdline(["tool", arg], max_length=256)
    assert time.perf_counter() - start < 20  # generous: a quadratic pass takes far longer
