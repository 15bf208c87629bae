//! What the emulated Azure offers: regions, VM sizes and marketplace images.

/// Regions the emulator accepts (ARM's normalized location names).
pub const REGIONS: &[&str] = &[
    "eastus",
    "eastus2",
    "westus",
    "westus2",
    "westus3",
    "centralus",
    "northcentralus",
    "southcentralus",
    "westcentralus",
    "canadacentral",
    "northeurope",
    "westeurope",
    "uksouth",
    "francecentral",
    "germanywestcentral",
    "swedencentral",
    "switzerlandnorth",
    "japaneast",
    "southeastasia",
    "eastasia",
    "australiaeast",
    "centralindia",
    "brazilsouth",
];

/// A VM size with the facts the emulator checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VmSize {
    /// Size name, e.g. `Standard_E16as_v5`.
    pub name: &'static str,
    /// vCPUs counted against the regional core quota.
    pub cores: u32,
    /// Memory in MiB.
    pub memory_mb: u32,
    /// Hardware cluster family: a running VM can only be resized within its family.
    pub family: &'static str,
    /// Whether the size can run as a Spot VM.
    pub spot: bool,
}

const fn size(
    name: &'static str,
    cores: u32,
    memory_gb: u32,
    family: &'static str,
    spot: bool,
) -> VmSize {
    VmSize {
        name,
        cores,
        memory_mb: memory_gb * 1024,
        family,
        spot,
    }
}

/// Known VM sizes: the azlin default `Standard_E16as_v5` and common B, D and E series.
pub const VM_SIZES: &[VmSize] = &[
    size("Standard_B1s", 1, 1, "standardBSFamily", false),
    size("Standard_B1ms", 1, 2, "standardBSFamily", false),
    size("Standard_B2s", 2, 4, "standardBSFamily", false),
    size("Standard_B2ms", 2, 8, "standardBSFamily", false),
    size("Standard_B4ms", 4, 16, "standardBSFamily", false),
    size("Standard_B8ms", 8, 32, "standardBSFamily", false),
    size("Standard_D2s_v5", 2, 8, "standardDSv5Family", true),
    size("Standard_D4s_v5", 4, 16, "standardDSv5Family", true),
    size("Standard_D8s_v5", 8, 32, "standardDSv5Family", true),
    size("Standard_D16s_v5", 16, 64, "standardDSv5Family", true),
    size("Standard_D2as_v5", 2, 8, "standardDASv5Family", true),
    size("Standard_D4as_v5", 4, 16, "standardDASv5Family", true),
    size("Standard_D8as_v5", 8, 32, "standardDASv5Family", true),
    size("Standard_D16as_v5", 16, 64, "standardDASv5Family", true),
    size("Standard_E2s_v5", 2, 16, "standardESv5Family", true),
    size("Standard_E4s_v5", 4, 32, "standardESv5Family", true),
    size("Standard_E8s_v5", 8, 64, "standardESv5Family", true),
    size("Standard_E16s_v5", 16, 128, "standardESv5Family", true),
    size("Standard_E2as_v5", 2, 16, "standardEASv5Family", true),
    size("Standard_E4as_v5", 4, 32, "standardEASv5Family", true),
    size("Standard_E8as_v5", 8, 64, "standardEASv5Family", true),
    size("Standard_E16as_v5", 16, 128, "standardEASv5Family", true),
    size("Standard_E32as_v5", 32, 256, "standardEASv5Family", true),
];

/// Looks a VM size up, ignoring case as ARM does.
pub fn vm_size(name: &str) -> Option<&'static VmSize> {
    VM_SIZES.iter().find(|s| s.name.eq_ignore_ascii_case(name))
}

/// A marketplace image `publisher:offer:sku` with its published versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Image {
    /// Publisher, e.g. `Canonical`.
    pub publisher: &'static str,
    /// Offer, e.g. `ubuntu-24_04-lts`.
    pub offer: &'static str,
    /// SKU, e.g. `server`.
    pub sku: &'static str,
    /// Published versions (`latest` resolves to the last one).
    pub versions: &'static [&'static str],
    /// OS name reported in the instance view.
    pub os_name: &'static str,
    /// OS version reported in the instance view.
    pub os_version: &'static str,
}

/// Known marketplace images.
pub const IMAGES: &[Image] = &[
    Image {
        publisher: "Canonical",
        offer: "ubuntu-24_04-lts",
        sku: "server",
        versions: &["24.04.202409120", "24.04.202505020"],
        os_name: "ubuntu",
        os_version: "24.04",
    },
    Image {
        publisher: "Canonical",
        offer: "ubuntu-24_04-lts",
        sku: "server-gen1",
        versions: &["24.04.202505020"],
        os_name: "ubuntu",
        os_version: "24.04",
    },
    Image {
        publisher: "Canonical",
        offer: "0001-com-ubuntu-server-jammy",
        sku: "22_04-lts-gen2",
        versions: &["22.04.202404090", "22.04.202505010"],
        os_name: "ubuntu",
        os_version: "22.04",
    },
    Image {
        publisher: "Debian",
        offer: "debian-12",
        sku: "12-gen2",
        versions: &["0.20250428.2096"],
        os_name: "debian",
        os_version: "12",
    },
];

/// Finds an image and resolves its version (`latest` or an exact published version).
pub fn image(
    publisher: &str,
    offer: &str,
    sku: &str,
    version: &str,
) -> Option<(&'static Image, &'static str)> {
    let image = IMAGES.iter().find(|i| {
        i.publisher.eq_ignore_ascii_case(publisher)
            && i.offer.eq_ignore_ascii_case(offer)
            && i.sku.eq_ignore_ascii_case(sku)
    })?;
    let resolved = if version.eq_ignore_ascii_case("latest") {
        image.versions.last().copied()
    } else {
        image.versions.iter().copied().find(|v| *v == version)
    }?;
    Some((image, resolved))
}

/// The paired region of a region (Azure's region pairs), where one is published.
pub fn paired_region(location: &str) -> Option<&'static str> {
    const PAIRS: &[(&str, &str)] = &[
        ("eastus", "westus"),
        ("westus", "eastus"),
        ("eastus2", "centralus"),
        ("centralus", "eastus2"),
        ("westus2", "westcentralus"),
        ("westcentralus", "westus2"),
        ("westus3", "eastus"),
        ("northcentralus", "southcentralus"),
        ("southcentralus", "northcentralus"),
        ("canadacentral", "canadaeast"),
        ("northeurope", "westeurope"),
        ("westeurope", "northeurope"),
        ("uksouth", "ukwest"),
        ("francecentral", "francesouth"),
        ("germanywestcentral", "germanynorth"),
        ("swedencentral", "swedensouth"),
        ("switzerlandnorth", "switzerlandwest"),
        ("japaneast", "japanwest"),
        ("southeastasia", "eastasia"),
        ("eastasia", "southeastasia"),
        ("australiaeast", "australiasoutheast"),
        ("centralindia", "southindia"),
        ("brazilsouth", "southcentralus"),
    ];
    PAIRS.iter().find(|(a, _)| *a == location).map(|(_, b)| *b)
}

/// Normalizes a location as ARM does (`West US 2` → `westus2`).
pub fn normalize_location(location: &str) -> String {
    location
        .chars()
        .filter(|c| !c.is_whitespace())
        .flat_map(char::to_lowercase)
        .collect()
}

/// Whether a normalized location is a known region.
pub fn is_region(location: &str) -> bool {
    REGIONS.contains(&location)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_size_and_image_are_known() {
        let size = vm_size("standard_e16as_v5").map(|s| s.cores);
        assert_eq!(size, Some(16));
        let found = image("Canonical", "ubuntu-24_04-lts", "server", "latest").map(|(_, v)| v);
        assert_eq!(found, Some("24.04.202505020"));
        assert!(image("Canonical", "ubuntu-24_04-lts", "server", "1.0").is_none());
        assert_eq!(normalize_location("West US 2"), "westus2");
        assert!(is_region("westus2"));
    }
}
