# Builds the Windows installer: PyInstaller freezes minerwatch (no Python needed on the target),
# makensis wraps it with the service, firewall rule and Event Log source.
#   powershell -ExecutionPolicy Bypass -File deploy\windows\build.ps1 -Version 1.2.3
# Reproducible inputs: pinned build tools, PYTHONHASHSEED=0, SOURCE_DATE_EPOCH from the last commit.
param([Parameter(Mandatory = $true)][string]$Version)
$ErrorActionPreference = "Stop"
Set-Location (Join-Path $PSScriptRoot "..\..")

$env:PYTHONHASHSEED = "0"
$env:SOURCE_DATE_EPOCH = (git log -1 --format=%ct)

python -m venv .build-venv
.\.build-venv\Scripts\python -m pip install --disable-pip-version-check -q -r deploy\windows\requirements-build.txt
if ($LASTEXITCODE -ne 0) { throw "pip install of the build tools failed" }
.\.build-venv\Scripts\python -m pip install --disable-pip-version-check -q .
if ($LASTEXITCODE -ne 0) { throw "pip install of minerwatch failed" }

# One folder, not one file: a one-file build unpacks itself to %TEMP% on every service start.
.\.build-venv\Scripts\pyinstaller --noconfirm --clean --onedir --console --noupx `
    --name minerwatch `
    --collect-data minerwatch `
    --collect-submodules minerwatch `
    --hidden-import win32timezone `
    --distpath dist --workpath build\pyinstaller `
    deploy\windows\entry.py
if ($LASTEXITCODE -ne 0) { throw "pyinstaller failed" }

# The frozen program answers before it is packed.
.\dist\minerwatch\minerwatch.exe --version
if ($LASTEXITCODE -ne 0) { throw "the frozen minerwatch.exe does not start" }

$makensis = (Get-Command makensis -ErrorAction SilentlyContinue).Source
if (-not $makensis) { $makensis = "${env:ProgramFiles(x86)}\NSIS\makensis.exe" }
& $makensis -WX "/DVERSION=$Version" "/DPAYLOAD=$PWD\dist\minerwatch" "/DOUTFILE=$PWD\dist\minerwatch-$Version-win64.exe" deploy\windows\minerwatch.nsi
if ($LASTEXITCODE -ne 0) { throw "makensis failed" }
Get-FileHash "dist\minerwatch-$Version-win64.exe" -Algorithm SHA256 | Format-List
