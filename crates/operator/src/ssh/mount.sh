# azlin-operator mount library: the static part of the NFS mount script.
#
# The operator prepends the variables and command functions below (see build_mount_script in
# nfs.rs) and appends az_main, which calls az_want_mount/az_want_home, az_remove_unwanted,
# az_write_fstab and az_do_mount/az_do_home for the plan. Variables the preamble sets:
#   ROOT MOUNT_TABLE BASE_OPTS FSTAB_EXTRA MARK REPORT_PREFIX KEYS_DIR_REAL SSHD_DROPIN_REAL
#   SEED_MARKER ENV_FILE_REAL ENV_MARKER LAYOUT_REPORT FSTAB SEED_DIR
# Functions the preamble defines: az_seed_find az_mount az_umount az_install_nfs_client az_id
#   az_as_user az_reload_sshd
# Checked by shellcheck in the tests, alone and as part of generated scripts.
# shellcheck shell=sh disable=SC2154
az_report() {
  AZ_MSG=$(printf '%s' "$3" | tr '\n\r\t' '   ' | cut -c1-600)
  printf '%s %s %s %s\n' "$REPORT_PREFIX" "$1" "$2" "$AZ_MSG"
  if [ "$2" = failed ]; then AZ_FAILED=1; fi
  return 0
}
az_init() {
  # shellcheck disable=SC2034 # az_main (generated) returns it
  AZ_FAILED=0
  NFS_STATE=unknown
  NFS_ERR=
  FSTAB_ERR=
  WORK=$(mktemp -d "${TMPDIR:-/tmp}/azlin-mount.XXXXXX") || {
    echo 'azlin-operator: cannot create a temporary directory' >&2
    return 1
  }
  trap 'rm -rf "$WORK"' EXIT
  : >"$WORK/managed" && : >"$WORK/want" && : >"$WORK/skip"
}
az_opts() {
  if [ "$1" = ro ]; then printf '%s,ro' "$BASE_OPTS"; else printf '%s' "$BASE_OPTS"; fi
}
az_ro_matches() {
  case ",$1," in
    *,ro,*) [ "$2" = ro ] ;;
    *) [ "$2" = rw ] ;;
  esac
}
az_mount_info() {
  [ -r "$MOUNT_TABLE" ] || return 1
  AZ_T=$1 awk '$2 == ENVIRON["AZ_T"] { s = $1; o = $4 } END { if (s == "") exit 1; print s, o }' "$MOUNT_TABLE"
}
az_managed_paths() {
  [ -f "$FSTAB" ] || return 0
  AZ_M=$MARK awk 'BEGIN { m = ENVIRON["AZ_M"] }
    pend != "" { mp = pend; pend = ""; if ($2 == mp) { print mp; next } }
    index($0, m) == 1 { pend = substr($0, length(m) + 1) }' "$FSTAB"
}
az_managed_entry() {
  AZ_P=$1 AZ_M=$MARK awk 'BEGIN { m = ENVIRON["AZ_M"]; p = ENVIRON["AZ_P"] }
    pend != "" { mp = pend; pend = ""; if ($2 == mp && mp == p) { print m mp; print; next } }
    index($0, m) == 1 { pend = substr($0, length(m) + 1) }' "$FSTAB"
}
az_user_lines() {
  AZ_M=$MARK awk 'BEGIN { m = ENVIRON["AZ_M"] }
    pend != "" { mp = pend; pend = ""; if ($2 == mp) next }
    index($0, m) == 1 { pend = substr($0, length(m) + 1); next }
    { print }' "$FSTAB"
}
az_unmanaged_entry() {
  [ -f "$FSTAB" ] || return 1
  AZ_P=$1 AZ_M=$MARK awk 'BEGIN { m = ENVIRON["AZ_M"]; p = ENVIRON["AZ_P"] }
    pend != "" { mp = pend; pend = ""; if ($2 == mp) next }
    index($0, m) == 1 { pend = substr($0, length(m) + 1); next }
    /^[ \t]*#/ { next }
    $2 == p { print; found = 1; exit }
    END { exit !found }' "$FSTAB"
}
az_add_entry() {
  printf '%s%s\n%s %s nfs %s,%s 0 0\n' "$MARK" "$2" "$1" "$2" "$3" "$FSTAB_EXTRA" >>"$WORK/managed"
}
az_skip() {
  printf '%s\n' "$1" >>"$WORK/skip"
  az_report "$1" failed "$2"
}
az_skipped() {
  grep -qxF -e "$1" "$WORK/skip"
}
az_has_nfs() {
  [ -x "$ROOT/sbin/mount.nfs" ] || [ -x "$ROOT/usr/sbin/mount.nfs" ]
}
az_nfs_ready() {
  case $NFS_STATE in ok) return 0 ;; failed) return 1 ;; esac
  if az_has_nfs; then NFS_STATE=ok; return 0; fi
  if AZ_O=$(az_install_nfs_client 2>&1) && az_has_nfs; then NFS_STATE=ok; return 0; fi
  NFS_STATE=failed
  NFS_ERR="installing the NFS client (nfs-common) failed: $(printf '%s\n' "$AZ_O" | tail -n 3)"
  return 1
}
az_mounted() {
  if [ -n "$FSTAB_ERR" ]; then
    az_report "$1" failed "$2, but not persisted: $FSTAB_ERR"
  else
    az_report "$1" mounted "$2"
  fi
}
az_want_mount() {
  printf '%s\n' "$2" >>"$WORK/want"
  if AZ_C=$(az_unmanaged_entry "$2"); then
    az_skip "$2" "an unmanaged /etc/fstab entry already uses this mount point: $AZ_C"
    return 0
  fi
  az_add_entry "$1" "$2" "$(az_opts "$3")"
}
az_keep_keys_local() {
  AZ_KD="$ROOT$KEYS_DIR_REAL"
  AZ_KF="$AZ_KD/$1"
  if [ ! -s "$AZ_KF" ]; then
    AZ_SRC_KEYS="$ROOT$2/.ssh/authorized_keys"
    if [ ! -s "$AZ_SRC_KEYS" ]; then
      echo "no $2/.ssh/authorized_keys to keep; refusing to mount over the home directory"
      return 1
    fi
    mkdir -p "$AZ_KD" && chmod 755 "${AZ_KD%/*}" "$AZ_KD" &&
      cp "$AZ_SRC_KEYS" "$AZ_KF.tmp" && chmod 644 "$AZ_KF.tmp" && mv -f "$AZ_KF.tmp" "$AZ_KF" || return 1
  fi
  AZ_DROPIN="$ROOT$SSHD_DROPIN_REAL"
  AZ_WANT="# Managed by azlin-operator: per-VM authorized keys stay on the local disk
# because the home directory is a shared NFS share.
AuthorizedKeysFile $KEYS_DIR_REAL/%u .ssh/authorized_keys"
  if [ -f "$AZ_DROPIN" ] && [ "$(cat "$AZ_DROPIN")" = "$AZ_WANT" ]; then return 0; fi
  mkdir -p "${AZ_DROPIN%/*}" || return 1
  AZ_HAD_OLD=no
  if [ -f "$AZ_DROPIN" ]; then cp "$AZ_DROPIN" "$WORK/dropin.old" && AZ_HAD_OLD=yes; fi
  printf '%s\n' "$AZ_WANT" >"$AZ_DROPIN" && chmod 644 "$AZ_DROPIN" || return 1
  if ! az_reload_sshd; then
    if [ "$AZ_HAD_OLD" = yes ]; then cp "$WORK/dropin.old" "$AZ_DROPIN"; else rm -f "$AZ_DROPIN"; fi
    echo "sshd rejected the AuthorizedKeysFile drop-in or could not be reloaded"
    return 1
  fi
}
az_want_home() {
  printf '%s\n' "$2" >>"$WORK/want"
  if AZ_C=$(az_unmanaged_entry "$2"); then
    az_skip "$2" "an unmanaged /etc/fstab entry already uses this mount point: $AZ_C"
    return 0
  fi
  AZ_U=
  AZ_G=
  if ! AZ_U=$(az_id -u "$3" 2>&1) || ! AZ_G=$(az_id -g "$3" 2>&1); then
    az_skip "$2" "admin user $3 not found: $AZ_U $AZ_G"
    return 0
  fi
  if [ "$AZ_U:$AZ_G" != "$4:$5" ]; then
    az_skip "$2" "admin user $3 has uid:gid $AZ_U:$AZ_G but a shared home needs $4:$5 on every VM (set it in cloud-init)"
    return 0
  fi
  if ! AZ_E=$(az_keep_keys_local "$3" "$2" 2>&1); then
    az_skip "$2" "cannot keep authorized_keys on the local disk: $AZ_E"
    return 0
  fi
  az_add_entry "$1" "$2" "$BASE_OPTS"
}
az_remove_unwanted() {
  az_managed_paths >"$WORK/old" || return 0
  while IFS= read -r AZ_P <&3; do
    if grep -qxF -e "$AZ_P" "$WORK/want"; then continue; fi
    AZ_T="$ROOT$AZ_P"
    if az_mount_info "$AZ_T" >/dev/null; then
      if AZ_O=$(az_umount "$AZ_T" 2>&1); then
        az_report "$AZ_P" unmounted "unmounted and removed from /etc/fstab"
      else
        az_managed_entry "$AZ_P" >>"$WORK/managed"
        az_report "$AZ_P" failed "unmount failed (the /etc/fstab entry is kept): $AZ_O"
      fi
    else
      az_report "$AZ_P" unmounted "removed from /etc/fstab"
    fi
  done 3<"$WORK/old"
}
az_write_fstab() {
  if [ ! -f "$FSTAB" ] && [ ! -s "$WORK/managed" ]; then return 0; fi
  {
    if [ -f "$FSTAB" ]; then az_user_lines; fi
    cat "$WORK/managed"
  } >"$WORK/fstab.new" || { FSTAB_ERR="cannot build the new /etc/fstab"; return 1; }
  if [ -f "$FSTAB" ] && cmp -s "$WORK/fstab.new" "$FSTAB"; then return 0; fi
  if AZ_O=$({ mkdir -p "${FSTAB%/*}" && cp "$WORK/fstab.new" "$FSTAB.azlin-new" &&
    chmod 644 "$FSTAB.azlin-new" && mv -f "$FSTAB.azlin-new" "$FSTAB"; } 2>&1); then
    return 0
  fi
  rm -f "$FSTAB.azlin-new"
  FSTAB_ERR="cannot write /etc/fstab: $AZ_O"
  return 1
}
az_unmount_stale() {
  if ! AZ_O=$(az_umount "$ROOT$2" 2>&1); then
    az_report "$2" failed "mounted from $1 with other options and cannot be unmounted: $AZ_O"
    return 1
  fi
}
# az_mkdir_for USER DIR: creates DIR as USER, or else as root and gives it to USER (a
# NoRootSquash share whose root belongs to root); prints why neither worked.
az_mkdir_for() {
  if AZ_ME=$(az_as_user "$1" -- mkdir "$2" 2>&1); then return 0; fi
  if mkdir "$2" 2>/dev/null; then
    if AZ_MU=$(az_id -u "$1") && AZ_MG=$(az_id -g "$1") && chown "$AZ_MU:$AZ_MG" "$2"; then
      return 0
    fi
    rmdir "$2" 2>/dev/null
  fi
  printf '%s' "$AZ_ME"
  return 1
}
# az_layout SOURCE PATH MODE [USER SHARED... -- LOCAL...]: once PATH is mounted, makes sure
# the storage template's directories exist: SHARED on the share (when missing, and the mount
# is writable), LOCAL on this VM's own disk, both for USER. Prints "; directories: ..."
# naming the ones that exist and those that could not be created; nothing without a template.
az_layout() {
  [ "$#" -gt 3 ] || return 0
  AZ_LP=$2
  AZ_LM=$3
  AZ_LU=$4
  shift 4
  AZ_SHARE=
  AZ_VM=
  AZ_NOT=
  AZ_WHERE=share
  for AZ_D in "$@"; do
    if [ "$AZ_D" = -- ]; then AZ_WHERE=vm; continue; fi
    AZ_E=
    if [ "$AZ_WHERE" = share ]; then
      AZ_DP="$ROOT$AZ_LP/$AZ_D"
      if [ ! -d "$AZ_DP" ] && [ "$AZ_LM" = rw ]; then AZ_E=$(az_mkdir_for "$AZ_LU" "$AZ_DP"); fi
      if [ -d "$AZ_DP" ]; then AZ_SHARE="$AZ_SHARE, $AZ_D"; else AZ_NOT="$AZ_NOT, $AZ_D on the share${AZ_E:+ ($AZ_E)}"; fi
    else
      AZ_DP="$ROOT$AZ_D"
      if [ ! -d "$AZ_DP" ]; then
        AZ_E=$( { mkdir -p "$AZ_DP" && chown "$(az_id -u "$AZ_LU"):$(az_id -g "$AZ_LU")" "$AZ_DP"; } 2>&1)
      fi
      if [ -d "$AZ_DP" ]; then AZ_VM="$AZ_VM, $AZ_D"; else AZ_NOT="$AZ_NOT, $AZ_D${AZ_E:+ ($AZ_E)}"; fi
    fi
  done
  printf '; %s' "$LAYOUT_REPORT"
  AZ_SEP=
  if [ -n "$AZ_SHARE" ]; then printf 'on the share: %s' "${AZ_SHARE#, }"; AZ_SEP='; '; fi
  if [ -n "$AZ_VM" ]; then printf '%son this VM: %s' "$AZ_SEP" "${AZ_VM#, }"; AZ_SEP='; '; fi
  if [ -n "$AZ_NOT" ]; then printf '%snot created: %s' "$AZ_SEP" "${AZ_NOT#, }"; fi
}
az_do_mount() {
  if az_skipped "$2"; then return 0; fi
  AZ_T="$ROOT$2"
  if AZ_I=$(az_mount_info "$AZ_T"); then
    if [ "${AZ_I%% *}" = "$1" ] && az_ro_matches "${AZ_I#* }" "$3"; then
      az_mounted "$2" "already mounted$(az_layout "$@")"
      return 0
    fi
    az_unmount_stale "${AZ_I%% *}" "$2" || return 0
  fi
  if ! az_nfs_ready; then az_report "$2" failed "$NFS_ERR"; return 0; fi
  if ! AZ_O=$(mkdir -p "$AZ_T" 2>&1); then
    az_report "$2" failed "cannot create the mount point: $AZ_O"
    return 0
  fi
  if AZ_O=$(az_mount -t nfs -o "$(az_opts "$3")" "$1" "$AZ_T" 2>&1); then
    az_mounted "$2" "mounted$(az_layout "$@")"
  else
    az_report "$2" failed "mount failed: $AZ_O"
  fi
}
# The program az_seed_find runs with `sh -c` (its text, not expanded here).
# shellcheck disable=SC2016,SC2034
AZ_COPY='dst=$1; shift; rc=0
for f do
  t="$dst/${f#./}"
  if [ -L "$f" ]; then
    [ -e "$t" ] || [ -L "$t" ] || cp -P "$f" "$t" || rc=1
  elif [ -d "$f" ]; then
    if [ ! -e "$t" ] && [ ! -L "$t" ]; then
      mkdir "$t" && chmod "$(stat -c %a "$f")" "$t" || rc=1
    fi
  elif [ -f "$f" ]; then
    [ -e "$t" ] || [ -L "$t" ] || cp -p "$f" "$t" || rc=1
  fi
done
exit $rc'
az_seed_into() {
  AZ_ST=$1
  # Numeric owner of one directory; no file names are parsed.
  # shellcheck disable=SC2012
  AZ_OWN=$(ls -nLd "$AZ_ST" | awk '{ print $3 ":" $4 }')
  if [ "$AZ_OWN" != "$4:$5" ]; then
    if ! chown "$4:$5" "$AZ_ST" 2>/dev/null; then
      echo "the share's root directory is owned by $AZ_OWN and root cannot give it to $4:$5 (RootSquash?): create the share with NoRootSquash or chown its root to $4:$5 once"
      return 1
    fi
  fi
  if ! AZ_LS=$(az_as_user "$3" -- ls -A "$AZ_ST" 2>&1); then
    echo "cannot list the share as $3, not seeded: $AZ_LS"
    return 0
  fi
  if [ -n "$AZ_LS" ]; then
    echo "share already has content, not seeded"
    return 0
  fi
  if ! az_as_user "$3" -- mkdir "$AZ_ST/$SEED_MARKER" 2>/dev/null; then
    echo "another VM is seeding the share, not seeded"
    return 0
  fi
  if [ ! -d "$ROOT$2" ]; then
    echo "no local home to seed from"
    return 0
  fi
  AZ_ERRS=$(cd "$ROOT$2" && az_seed_find "$3" "$AZ_ST" 2>&1)
  # shellcheck disable=SC2016 # $1 belongs to the inner sh
  az_as_user "$3" -- sh -c 'date -u +%Y-%m-%dT%H:%M:%SZ >"$1"' azlin-seed "$AZ_ST/$SEED_MARKER/seeded" 2>/dev/null
  if [ -n "$AZ_ERRS" ]; then
    echo "seeded from the local home with errors: $AZ_ERRS"
  else
    echo "seeded from the local home"
  fi
}
az_seed() {
  if az_mount_info "$SEED_DIR" >/dev/null && ! az_umount "$SEED_DIR"; then
    echo "a stale seeding mount at $SEED_DIR cannot be unmounted"
    return 1
  fi
  mkdir -p "$SEED_DIR" || return 1
  if ! az_mount -t nfs -o "$BASE_OPTS" "$1" "$SEED_DIR"; then
    echo "mounting the share for seeding failed"
    return 1
  fi
  az_seed_into "$SEED_DIR" "$2" "$3" "$4" "$5"
  AZ_RC=$?
  if ! az_umount "$SEED_DIR"; then echo "cannot unmount the seeding mount"; AZ_RC=1; fi
  rmdir "$SEED_DIR" 2>/dev/null
  return $AZ_RC
}
az_do_home() {
  if az_skipped "$2"; then return 0; fi
  AZ_T="$ROOT$2"
  if AZ_I=$(az_mount_info "$AZ_T"); then
    if [ "${AZ_I%% *}" = "$1" ] && az_ro_matches "${AZ_I#* }" rw; then
      az_mounted "$2" "already mounted"
      return 0
    fi
    az_unmount_stale "${AZ_I%% *}" "$2" || return 0
  fi
  if ! az_nfs_ready; then az_report "$2" failed "$NFS_ERR"; return 0; fi
  if ! AZ_SEED_MSG=$(az_seed "$1" "$2" "$3" "$4" "$5" 2>&1); then
    az_report "$2" failed "$AZ_SEED_MSG"
    return 0
  fi
  if ! AZ_O=$(mkdir -p "$AZ_T" 2>&1); then
    az_report "$2" failed "cannot create the home directory: $AZ_O"
    return 0
  fi
  if AZ_O=$(az_mount -t nfs -o "$BASE_OPTS" "$1" "$AZ_T" 2>&1); then
    az_mounted "$2" "mounted; $AZ_SEED_MSG"
  else
    az_report "$2" failed "mount failed: $AZ_O"
  fi
}
az_env_report() {
  AZ_MSG=$(printf '%s' "$2" | tr '\n\r\t' '   ' | cut -c1-600)
  printf '%s-ENV %s %s\n' "$REPORT_PREFIX" "$1" "$AZ_MSG"
  # shellcheck disable=SC2034 # az_main (generated) returns it
  if [ "$1" = failed ]; then AZ_FAILED=1; fi
  return 0
}
# az_env CONTENT: the Fleet environment file holds CONTENT; empty CONTENT removes a file
# the operator wrote (one that starts with ENV_MARKER), and leaves any other file alone.
az_env() {
  AZ_ENV="$ROOT$ENV_FILE_REAL"
  if [ -z "$1" ]; then
    if [ -f "$AZ_ENV" ] && head -n 1 "$AZ_ENV" | grep -q "^$ENV_MARKER"; then
      if AZ_O=$(rm -f "$AZ_ENV" 2>&1); then az_env_report ok removed; else az_env_report failed "$AZ_O"; fi
    else
      az_env_report ok absent
    fi
    return 0
  fi
  if [ -f "$AZ_ENV" ] && [ "$(cat "$AZ_ENV")" = "$1" ]; then
    az_env_report ok unchanged
    return 0
  fi
  if AZ_O=$( { mkdir -p "${AZ_ENV%/*}" && printf '%s\n' "$1" >"$AZ_ENV.tmp" && chmod 644 "$AZ_ENV.tmp" && mv -f "$AZ_ENV.tmp" "$AZ_ENV"; } 2>&1); then
    az_env_report ok written
  else
    az_env_report failed "$AZ_O"
  fi
}
