; minerwatch installer: the exporter as a Windows service, a firewall rule, the Event Log source.
;
; Build (Windows or Linux with Debian's nsis):
;   makensis /DVERSION=1.2.3 /DPAYLOAD=dist\minerwatch deploy\windows\minerwatch.nsi
; PAYLOAD is PyInstaller's one-folder output (minerwatch.exe and its libraries): no Python needed
; on the target.
;
; Silent install, as Group Policy, Intune or SCCM run it:
;   minerwatch-1.2.3-win64.exe /S /ALLOW_FROM=10.20.0.5,10.20.0.6 /LISTEN=:9789
;        /COLLECTORS=process,network,antivirus,tuning,windows,host /EXTRA_FLAGS="--log.level=warn"
; /ALLOW_FROM  addresses or ranges allowed to scrape (the Prometheus servers); required on the
;              first install ("any" opens the port to every address, say so on purpose)
; /LISTEN      --web.listen-address, default :9789
; /COLLECTORS  comma-separated; when given, only these run (--collector.disable-defaults)
; /EXTRA_FLAGS appended to the service command line as written
; An upgrade without parameters keeps those of the last install (HKLM\SOFTWARE\minerwatch), and
; C:\ProgramData\minerwatch\minerwatch.yml is never overwritten. Exit status 2: a bad parameter.

Unicode true
SetCompressor /SOLID lzma
SetDateSave off          ; no build-machine file times in the package
RequestExecutionLevel admin
ManifestSupportedOS all

!ifndef VERSION
  !error "define VERSION: makensis /DVERSION=x.y.z"
!endif
!ifndef PAYLOAD
  !error "define PAYLOAD: the folder PyInstaller made (dist\minerwatch)"
!endif
!ifndef OUTFILE
  !define OUTFILE "minerwatch-${VERSION}-win64.exe"  ; not *setup.exe: Windows applies compatibility shims to those
!endif

!include "FileFunc.nsh"
!include "WordFunc.nsh"
!include "LogicLib.nsh"
!include "x64.nsh"

!define SERVICE "minerwatch"
!define SETTINGS_KEY "SOFTWARE\minerwatch"
!define UNINSTALL_KEY "Software\Microsoft\Windows\CurrentVersion\Uninstall\minerwatch"
!define EVENTLOG_KEY "SYSTEM\CurrentControlSet\Services\EventLog\Application\minerwatch"

Name "minerwatch ${VERSION}"
OutFile "${OUTFILE}"
InstallDir "$PROGRAMFILES64\minerwatch"
ShowInstDetails show
VIProductVersion "${VERSION}.0"
VIAddVersionKey "ProductName" "minerwatch"
VIAddVersionKey "FileVersion" "${VERSION}"
VIAddVersionKey "FileDescription" "minerwatch exporter installer"
VIAddVersionKey "LegalCopyright" "Apache-2.0"

Page directory
Page instfiles
UninstPage uninstConfirm
UninstPage instfiles

Var LISTEN
Var COLLECTORS
Var ALLOW_FROM
Var EXTRA_FLAGS
Var PORT
Var FLAGS
Var DATA

Function Fail
  ; $0: the message. Silent installs have no one to read a box: the log and exit status 2 say it.
  DetailPrint "minerwatch setup: error: $0"
  IfSilent +2
    MessageBox MB_ICONSTOP "$0"
  SetErrorLevel 2
  Quit
FunctionEnd

Function ReadParameters
  ${GetParameters} $R0
  ReadRegStr $LISTEN HKLM "${SETTINGS_KEY}" "Listen"
  ReadRegStr $COLLECTORS HKLM "${SETTINGS_KEY}" "Collectors"
  ReadRegStr $ALLOW_FROM HKLM "${SETTINGS_KEY}" "AllowFrom"
  ReadRegStr $EXTRA_FLAGS HKLM "${SETTINGS_KEY}" "ExtraFlags"
  ClearErrors
  ${GetOptions} $R0 "/LISTEN=" $R1
  ${IfNot} ${Errors}
    StrCpy $LISTEN $R1
  ${EndIf}
  ClearErrors
  ${GetOptions} $R0 "/COLLECTORS=" $R1
  ${IfNot} ${Errors}
    StrCpy $COLLECTORS $R1
  ${EndIf}
  ClearErrors
  ${GetOptions} $R0 "/ALLOW_FROM=" $R1
  ${IfNot} ${Errors}
    StrCpy $ALLOW_FROM $R1
  ${EndIf}
  ClearErrors
  ${GetOptions} $R0 "/EXTRA_FLAGS=" $R1
  ${IfNot} ${Errors}
    StrCpy $EXTRA_FLAGS $R1
  ${EndIf}
  ${If} $LISTEN == ""
    StrCpy $LISTEN ":9789"
  ${EndIf}
  ${If} $ALLOW_FROM == ""
    StrCpy $0 "/ALLOW_FROM is required: the addresses of the Prometheus servers (or 'any')"
    Call Fail
  ${EndIf}
  ; the port is what follows the last colon of the listen address
  ${WordFind} "$LISTEN" ":" "-1" $PORT
  IntOp $R2 $PORT + 0
  ${If} "$R2" != "$PORT"
  ${OrIf} $R2 < 1
  ${OrIf} $R2 > 65535
    StrCpy $0 "/LISTEN=$LISTEN: expected HOST:PORT or :PORT, for example :9789"
    Call Fail
  ${EndIf}
FunctionEnd

Function BuildFlags
  StrCpy $FLAGS '--web.listen-address=$LISTEN "--config.file=$DATA\minerwatch.yml"'
  ${If} $COLLECTORS != ""
    StrCpy $FLAGS "$FLAGS --collector.disable-defaults"
    StrCpy $R3 1
    ${Do}
      ClearErrors
      ${WordFind} "$COLLECTORS" "," "E+$R3" $R4
      ${If} ${Errors}
        ${ExitDo}
      ${EndIf}
      StrCpy $FLAGS "$FLAGS --collector.$R4"
      IntOp $R3 $R3 + 1
    ${Loop}
    ; a single name has no comma: WordFind reports it as error 1 on the first word
    ${If} $R3 == 1
      StrCpy $FLAGS "$FLAGS --collector.$COLLECTORS"
    ${EndIf}
  ${EndIf}
  ${If} $EXTRA_FLAGS != ""
    StrCpy $FLAGS "$FLAGS $EXTRA_FLAGS"
  ${EndIf}
FunctionEnd

Section "minerwatch"
  SetRegView 64
  SetShellVarContext all
  StrCpy $DATA "$APPDATA\minerwatch"   ; all users: C:\ProgramData\minerwatch
  Call ReadParameters
  Call BuildFlags

  ; An upgrade: stop the running service before its files are replaced.
  nsExec::ExecToLog 'sc.exe stop ${SERVICE}'
  Pop $0
  Sleep 3000

  SetOutPath "$INSTDIR"
  SetOverwrite on
  File /r "${PAYLOAD}\*.*"
  WriteUninstaller "$INSTDIR\uninstall.exe"

  CreateDirectory "$DATA"
  SetOutPath "$DATA"
  SetOverwrite off            ; the config survives upgrades
  File "minerwatch.yml"
  SetOverwrite on
  ; only SYSTEM and administrators may change what the service reads
  nsExec::ExecToLog 'icacls "$DATA" /inheritance:r /grant:r "*S-1-5-18:(OI)(CI)F" "*S-1-5-32-544:(OI)(CI)F"'
  Pop $0

  WriteRegStr HKLM "${SETTINGS_KEY}" "Listen" "$LISTEN"
  WriteRegStr HKLM "${SETTINGS_KEY}" "Collectors" "$COLLECTORS"
  WriteRegStr HKLM "${SETTINGS_KEY}" "AllowFrom" "$ALLOW_FROM"
  WriteRegStr HKLM "${SETTINGS_KEY}" "ExtraFlags" "$EXTRA_FLAGS"
  WriteRegStr HKLM "${SETTINGS_KEY}" "Version" "${VERSION}"

  ; Event Log source: EventCreate.exe's messages print the text minerwatch gives
  WriteRegExpandStr HKLM "${EVENTLOG_KEY}" "EventMessageFile" "%SystemRoot%\System32\EventCreate.exe"
  WriteRegDWORD HKLM "${EVENTLOG_KEY}" "TypesSupported" 7

  ; The service: LocalSystem (Defender's exclusion key is readable only by SYSTEM and admins),
  ; started at boot, restarted on failure, error exits counting as failures.
  nsExec::ExecToLog 'sc.exe query ${SERVICE}'
  Pop $0
  ${If} $0 == 0
    nsExec::ExecToLog 'sc.exe config ${SERVICE} binPath= "\"$INSTDIR\minerwatch.exe\" service $FLAGS" start= auto obj= LocalSystem'
  ${Else}
    nsExec::ExecToLog 'sc.exe create ${SERVICE} binPath= "\"$INSTDIR\minerwatch.exe\" service $FLAGS" start= auto obj= LocalSystem DisplayName= "minerwatch exporter"'
  ${EndIf}
  Pop $0
  ${If} $0 != 0
    StrCpy $0 "cannot create the service (sc.exe exit $0)"
    Call Fail
  ${EndIf}
  nsExec::ExecToLog 'sc.exe description ${SERVICE} "Prometheus exporter that catches cryptocurrency miners on this PC."'
  Pop $0
  nsExec::ExecToLog 'sc.exe failure ${SERVICE} reset= 86400 actions= restart/5000/restart/5000/restart/60000'
  Pop $0
  nsExec::ExecToLog 'sc.exe failureflag ${SERVICE} 1'
  Pop $0
  ; The DNS client's own log names the process behind each look-up of a pool (off by default).
  nsExec::ExecToLog 'wevtutil.exe sl Microsoft-Windows-DNS-Client/Operational /e:true /ms:16777216'
  Pop $0

  ; Firewall: the port, for the Prometheus servers only.
  nsExec::ExecToLog 'netsh advfirewall firewall delete rule name="minerwatch"'
  Pop $0
  ${If} $ALLOW_FROM == "any"
    StrCpy $R5 "any"
  ${Else}
    StrCpy $R5 "$ALLOW_FROM"
  ${EndIf}
  nsExec::ExecToLog 'netsh advfirewall firewall add rule name="minerwatch" dir=in action=allow protocol=TCP localport=$PORT remoteip=$R5 program="$INSTDIR\minerwatch.exe" profile=any'
  Pop $0
  ${If} $0 != 0
    StrCpy $0 "cannot add the firewall rule (netsh exit $0): check /ALLOW_FROM=$ALLOW_FROM"
    Call Fail
  ${EndIf}

  WriteRegStr HKLM "${UNINSTALL_KEY}" "DisplayName" "minerwatch"
  WriteRegStr HKLM "${UNINSTALL_KEY}" "DisplayVersion" "${VERSION}"
  WriteRegStr HKLM "${UNINSTALL_KEY}" "Publisher" "minerwatch"
  WriteRegStr HKLM "${UNINSTALL_KEY}" "UninstallString" '"$INSTDIR\uninstall.exe"'
  WriteRegStr HKLM "${UNINSTALL_KEY}" "QuietUninstallString" '"$INSTDIR\uninstall.exe" /S'
  WriteRegDWORD HKLM "${UNINSTALL_KEY}" "NoModify" 1
  WriteRegDWORD HKLM "${UNINSTALL_KEY}" "NoRepair" 1

  nsExec::ExecToLog 'sc.exe start ${SERVICE}'
  Pop $0
SectionEnd

Section "Uninstall"
  SetRegView 64
  nsExec::ExecToLog 'sc.exe stop ${SERVICE}'
  Pop $0
  Sleep 3000
  nsExec::ExecToLog 'sc.exe delete ${SERVICE}'
  Pop $0
  nsExec::ExecToLog 'netsh advfirewall firewall delete rule name="minerwatch"'
  Pop $0
  DeleteRegKey HKLM "${EVENTLOG_KEY}"
  DeleteRegKey HKLM "${UNINSTALL_KEY}"
  DeleteRegKey HKLM "${SETTINGS_KEY}"
  RMDir /r "$INSTDIR"
  ; C:\ProgramData\minerwatch (config and log) stays: evidence and settings outlive an uninstall.
SectionEnd
