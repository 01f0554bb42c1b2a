#!/bin/bash
# atrest: encrypt an EC2 instance-store device with LUKS (fix-ec2-instance-store-luks).
#
# Runs on the instance as the SSM Command document atrest's EC2InstanceStoreLuks (template.yaml
# embeds this file verbatim; tests/ec2_luks_script.rs checks the two are identical and lints the
# rendered script with bash -n and shellcheck). SSM replaces each {{ Name }} below with the
# parameter's value before the script runs; every value has already matched the document's
# allowedPattern (no quotes, spaces or shell metacharacters), is assigned once inside single
# quotes, validated again here, and only ever used quoted.
#
# What it does, following AWS's "instance store encryption" approach without its weak spots:
#   1. refuses a device that is mounted or holds any filesystem/RAID/LUKS signature unless
#      Force=true (this erases the device);
#   2. envelope encryption: KMS GenerateDataKey makes a 256-bit key; the plaintext only lives
#      in RAM (/dev/shm) long enough to format and open the device; the KMS-encrypted copy is
#      stored as an SSM SecureString parameter (not a file in S3), written BEFORE formatting so
#      there is never a LUKS device whose key is not stored;
#   3. cryptsetup luksFormat (LUKS2) + open, mkfs, mount at MountPoint;
#   4. a boot unit reopens and remounts it after a reboot (instance-store data survives a
#      reboot, not a stop), fetching the key from SSM and decrypting it with KMS;
#   5. tags the instance <TagKey>=luks, which the Config rule ec2-instance-store-encrypted reads.
# Re-running on a device it already set up (open and mounted) only re-applies the tag.
#
# The instance role needs: kms:GenerateDataKey and kms:Decrypt on the key; ssm:PutParameter and
# ssm:GetParameter on parameter/atrest/instance-store-luks/*; ec2:CreateTags on
# itself (template.yaml: the EC2InstanceStoreLuksInstancePolicy managed policy).
set -euo pipefail

device='{{ Device }}'
mount_point='{{ MountPoint }}'
kms_key_id='{{ KmsKeyId }}'
filesystem='{{ FileSystem }}'
mapper_name='{{ MapperName }}'
tag_key='{{ TagKey }}'
force='{{ Force }}'

log() { printf 'atrest-luks: %s\n' "$*"; }
die() {
    printf 'atrest-luks: ERROR: %s\n' "$*" >&2
    exit 1
}

[[ $device =~ ^/dev/[a-z0-9]+(/[a-z0-9_-]+)*$ ]] || die "Device must look like /dev/nvme1n1 or /dev/xvdb"
[[ $mount_point =~ ^(/[A-Za-z0-9_-][A-Za-z0-9._-]*)+$ ]] || die "MountPoint must be an absolute path without . or .. parts"
[[ $kms_key_id =~ ^[A-Za-z0-9:/_-]+$ ]] || die "KmsKeyId must be a key id, key ARN, alias name or alias ARN"
[[ $filesystem == ext4 || $filesystem == xfs ]] || die "FileSystem must be ext4 or xfs"
[[ $mapper_name =~ ^[A-Za-z0-9_-]{1,64}$ ]] || die "MapperName must be 1-64 letters, digits, _ or -"
[[ $tag_key =~ ^[A-Za-z0-9_.:/=+@-]{1,128}$ ]] || die "TagKey is not a valid tag key"
[[ $force == true || $force == false ]] || die "Force must be true or false"
[[ $EUID -eq 0 ]] || die "must run as root"

install_tools() {
    local missing=()
    command -v cryptsetup >/dev/null || missing+=(cryptsetup)
    [[ $filesystem == xfs ]] && ! command -v mkfs.xfs >/dev/null && missing+=(xfsprogs)
    [[ ${#missing[@]} -eq 0 ]] && return 0
    log "installing ${missing[*]}"
    if command -v dnf >/dev/null; then
        dnf install -y "${missing[@]}"
    elif command -v yum >/dev/null; then
        yum install -y "${missing[@]}"
    elif command -v apt-get >/dev/null; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}"
    else
        die "cannot install ${missing[*]}: no dnf, yum or apt-get"
    fi
}

imds() {
    local token
    token=$(curl -sSf -X PUT -H 'X-aws-ec2-metadata-token-ttl-seconds: 60' http://169.254.169.254/latest/api/token)
    curl -sSf -H "X-aws-ec2-metadata-token: $token" "http://169.254.169.254/latest/meta-data/$1"
}

install_tools
for tool in aws curl blkid findmnt lsblk wipefs base64 "mkfs.$filesystem"; do
    command -v "$tool" >/dev/null || die "$tool is required"
done

instance_id=$(imds instance-id)
region=$(imds placement/region)
parameter_name="/atrest/instance-store-luks/$instance_id/$mapper_name"
mapped="/dev/mapper/$mapper_name"
context="atrest-instance=$instance_id,atrest-device=$device"

tag_instance() {
    aws ec2 create-tags --region "$region" --resources "$instance_id" --tags "Key=$tag_key,Value=luks"
    log "tagged $instance_id $tag_key=luks"
}

[[ -b $device ]] || die "$device is not a block device on $instance_id"

# Already done by an earlier run: nothing to format again.
if cryptsetup isLuks "$device" 2>/dev/null && [[ -b $mapped ]] && findmnt --source "$mapped" --target "$mount_point" >/dev/null; then
    log "$device is already LUKS-encrypted, open as $mapped and mounted at $mount_point"
    tag_instance
    exit 0
fi

# Refuse to destroy anything unless told to.
mounted=$(lsblk -nrpo MOUNTPOINT "$device" | sed '/^$/d' || true)
if [[ -n $mounted ]]; then
    [[ $force == true ]] || die "$device (or a partition of it) is mounted at: ${mounted//$'\n'/, }. Refusing; Force=true unmounts it and ERASES the device."
    log "Force=true: unmounting $device"
    while read -r mp; do
        [[ -n $mp ]] && umount -- "$mp"
    done <<<"$mounted"
fi
signature=$(blkid -p -o value -s TYPE "$device" 2>/dev/null || true)
if [[ -n $signature ]] || [[ $(lsblk -nro NAME "$device" | wc -l) -gt 1 ]]; then
    [[ $force == true ]] || die "$device holds data (${signature:-partitions}). Refusing; Force=true ERASES it."
    log "Force=true: erasing the ${signature:-partition} signatures on $device"
    if [[ -b $mapped ]]; then
        cryptsetup close "$mapper_name"
    fi
    wipefs --all --force "$device"
fi
if findmnt --mountpoint "$mount_point" >/dev/null; then
    die "$mount_point is already a mount point; choose another MountPoint"
fi
if [[ -d $mount_point && -n $(ls -A -- "$mount_point") ]]; then
    [[ $force == true ]] || die "$mount_point is a non-empty directory; mounting over it would hide its files. Refusing without Force=true."
fi
if aws ssm get-parameter --region "$region" --name "$parameter_name" >/dev/null 2>&1; then
    [[ $force == true ]] || die "parameter $parameter_name already holds a key (an earlier setup?). Refusing to replace it; Force=true does."
fi

umask 077
keyfile=$(mktemp -p /dev/shm atrest-luks.XXXXXXXX)
cleanup() {
    if [[ -f $keyfile ]]; then
        shred -u "$keyfile" 2>/dev/null || rm -f "$keyfile"
    fi
}
trap cleanup EXIT

log "generating a data key with KMS key $kms_key_id"
read -r plaintext wrapped < <(aws kms generate-data-key --region "$region" --key-id "$kms_key_id" --key-spec AES_256 \
    --encryption-context "$context" --query '[Plaintext,CiphertextBlob]' --output text)
[[ -n ${plaintext:-} && -n ${wrapped:-} ]] || die "KMS GenerateDataKey with $kms_key_id returned no key; nothing was changed"
printf '%s' "$plaintext" | base64 -d >"$keyfile"
unset plaintext

# Stored before formatting: a LUKS device must never exist without its key stored.
aws ssm put-parameter --region "$region" --name "$parameter_name" --type SecureString --key-id "$kms_key_id" \
    --value "$wrapped" --overwrite \
    --description "atrest: KMS-encrypted LUKS key of $device on $instance_id (encryption context $context)" >/dev/null
log "stored the encrypted key in SSM parameter $parameter_name"

cryptsetup luksFormat --type luks2 --batch-mode --key-file "$keyfile" "$device"
cryptsetup open --key-file "$keyfile" "$device" "$mapper_name"
"mkfs.$filesystem" -q "$mapped"
mkdir -p -- "$mount_point"
mount -- "$mapped" "$mount_point"
log "$device is LUKS-encrypted, open as $mapped, $filesystem mounted at $mount_point"

# Reopen after a reboot: the key is fetched from SSM and decrypted by KMS, in RAM only.
unit="atrest-luks-$mapper_name"
opener="/usr/local/sbin/$unit"
{
    printf '#!/bin/bash\nset -euo pipefail\n'
    printf 'region=%q parameter=%q device=%q mapper=%q mount_point=%q context=%q\n' \
        "$region" "$parameter_name" "$device" "$mapper_name" "$mount_point" "$context"
    # shellcheck disable=SC2016 # written literally into the opener script
    printf '%s\n' \
        'wrapped=$(aws ssm get-parameter --region "$region" --name "$parameter" --with-decryption --query Parameter.Value --output text)' \
        'aws kms decrypt --region "$region" --ciphertext-blob "$wrapped" --encryption-context "$context" --query Plaintext --output text | base64 -d | cryptsetup open --key-file - "$device" "$mapper"' \
        'mkdir -p -- "$mount_point"' \
        'mount -- "/dev/mapper/$mapper" "$mount_point"'
} >"$opener"
chmod 700 "$opener"
cat >"/etc/systemd/system/$unit.service" <<UNIT
[Unit]
Description=atrest: open and mount LUKS instance store $device
Wants=network-online.target
After=network-online.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=$opener

[Install]
WantedBy=multi-user.target
UNIT
if command -v systemctl >/dev/null; then
    systemctl daemon-reload
    systemctl enable "$unit.service" >/dev/null
fi

tag_instance
