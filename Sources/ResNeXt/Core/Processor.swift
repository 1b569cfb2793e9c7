import HostCPU

/// The processor this process runs on: its vendor and the instruction sets it and the operating
/// system support (read with CPUID and XGETBV by the HostCPU module).
public struct Processor: Sendable, Equatable {
    public var vendor: String
    public var features: Set<String>

    public init(vendor: String, features: Set<String>) {
        self.vendor = vendor
        self.features = features
    }

    /// The instruction sets HostCPU knows, in /proc/cpuinfo's spelling.
    public static let knownFeatures: [String] = {
        var names: [String] = []
        var p = host_cpu_known_features()!
        while let name = p.pointee {
            names.append(String(cString: name))
            p += 1
        }
        return names
    }()

    /// This machine's processor.
    public static let current = Processor(
        vendor: String(cString: host_cpu_vendor()),
        features: Set(knownFeatures.filter { host_cpu_supports($0) == 1 }))

    /// AVX2 with FMA: what OpenBLAS's Haswell and Zen kernels need.
    public var hasFMA: Bool { features.isSuperset(of: ["avx", "avx2", "fma"]) }

    /// The AVX-512 subsets OpenBLAS's SkylakeX kernels need.
    public var hasAVX512: Bool { hasFMA && features.isSuperset(of: ["avx512f", "avx512bw", "avx512dq", "avx512vl", "avx512cd"]) }

    /// "AVX-512 and FMA", "AVX2 and FMA" or "no FMA", for messages.
    public var vectorSummary: String { hasAVX512 ? "AVX-512 and FMA" : hasFMA ? "AVX2 and FMA" : "no FMA" }
}
