#!/usr/bin/env bash
# Generates docs/ with tfplugindocs, offline: the provider schema comes from
# OpenTofu (`providers schema -json` with a dev_overrides CLI config pointing
# at a freshly built provider), so tfplugindocs never tries to download
# Terraform.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
tofu="$(scripts/tool.sh tofu)"
tfplugindocs="$(scripts/tool.sh tfplugindocs)"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
go build -o "$tmp/terraform-provider-herd" .
cat > "$tmp/cli.tfrc" <<EOT
provider_installation {
  dev_overrides {
    "herd-project/herd" = "$tmp"
  }
  direct {}
}
EOT
mkdir "$tmp/cfg"
cat > "$tmp/cfg/main.tf" <<'EOT'
terraform {
  required_providers {
    herd = { source = "herd-project/herd" }
  }
}
EOT
TF_CLI_CONFIG_FILE="$tmp/cli.tfrc" "$tofu" -chdir="$tmp/cfg" providers schema -json 2>/dev/null > "$tmp/schema.json"
# tfplugindocs looks the schema up by the provider's short name.
sed -i 's|"registry.opentofu.org/herd-project/herd"|"herd"|' "$tmp/schema.json"
"$tfplugindocs" generate --provider-name herd --rendered-provider-name herd \
  --providers-schema "$tmp/schema.json" >/dev/null
echo "docs: generated docs/"
