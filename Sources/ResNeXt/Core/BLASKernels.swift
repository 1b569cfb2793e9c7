import CBLAS

/// The kernel family OpenBLAS runs ("Haswell", "Zen", "SkylakeX", ...): its own choice for this
/// processor when the library loaded, or `OPENBLAS_CORETYPE`'s.
public var blasCoreName: String {
    openblas_get_corename().map { String(cString: $0) } ?? "unknown"
}

/// Whether OpenBLAS runs 512-bit kernels here: on such a processor its products can beat the
/// engine's own 256-bit kernels (`ConvolutionTuner`, docs/performance.md).
public var blasUsesAVX512: Bool {
    ["SkylakeX", "Cooperlake", "SapphireRapids"].contains(blasCoreName)
}

/// The start-up line of `train` and `bench` where OpenBLAS runs 512-bit kernels and the
/// convolution paths are not tuned; nil elsewhere.
public var untunedAVX512Hint: String? {
    blasUsesAVX512
        ? "OpenBLAS runs AVX-512 kernels here (\(blasCoreName)), which can beat the engine's own 256-bit ones: --tune-convolutions times both and keeps the faster (docs/performance.md)"
        : nil
}

/// Where OpenBLAS's kernel family comes from, and what start-up must do about it.
///
/// OpenBLAS (Debian's 0.3.21, built for every x86-64) picks a kernel family from the processor's
/// model when the library loads. A processor newer than the library, or one a virtual machine
/// hides, gets its generic `Prescott` kernels (SSE3, no FMA): several times slower than the
/// FMA kernels the processor can run (on Intel Xeon model 207, 31 against 155-228 GFLOP/s per
/// core). OpenBLAS reads `OPENBLAS_CORETYPE` only when it loads, so the fix is a restart of the
/// process with the variable set, before MPI starts and before any matrix product.
public enum BLASKernelChoice: Equatable, Sendable {
    /// The user set `OPENBLAS_CORETYPE` (this family): kept as it is.
    case setByUser(String)
    /// OpenBLAS's own choice, right for this processor (a family with FMA, or a processor without).
    case openBLAS(String)
    /// OpenBLAS picked a family without FMA on a processor with FMA: restart with `OPENBLAS_CORETYPE` = `with`.
    case restart(picked: String, with: String)
    /// This process is that restart: OpenBLAS had picked `picked`; `OPENBLAS_CORETYPE` is `with`.
    case restarted(picked: String, with: String)

    /// OpenBLAS's kernel families that use FMA (256- or 512-bit).
    public static let fmaFamilies: Set<String> = ["Haswell", "Zen", "SkylakeX", "Cooperlake", "SapphireRapids"]

    /// The family a processor with FMA should run: SkylakeX (512-bit) where it has the AVX-512
    /// subsets those kernels use, else Zen on AMD and Haswell elsewhere; nil without FMA.
    public static func family(for processor: Processor) -> String? {
        if processor.hasAVX512 { return "SkylakeX" }
        if processor.hasFMA { return processor.vendor == "AuthenticAMD" ? "Zen" : "Haswell" }
        return nil
    }

    /// The choice, from what OpenBLAS picked, `OPENBLAS_CORETYPE` as the process found it, and
    /// `restartedFrom`: the family OpenBLAS had picked before a restart (nil on a first start).
    public static func decide(picked: String, coretype: String?, restartedFrom: String?, processor: Processor) -> BLASKernelChoice {
        if let coretype, !coretype.isEmpty {
            if let restartedFrom { return .restarted(picked: restartedFrom, with: coretype) }
            return .setByUser(coretype)
        }
        if !fmaFamilies.contains(picked), let family = family(for: processor) {
            return .restart(picked: picked, with: family)
        }
        return .openBLAS(picked)
    }

    /// The start-up line: the family that runs (`running`, `blasCoreName`) and why.
    public func startupLine(running: String, processor: Processor) -> String {
        switch self {
        case .setByUser(let family):
            return "OpenBLAS: \(running) kernels (OPENBLAS_CORETYPE=\(family))"
        case .openBLAS:
            return "OpenBLAS: \(running) kernels (its own choice for this processor: \(processor.vectorSummary))"
        case .restarted(let picked, let family):
            return
                "OpenBLAS: \(running) kernels (OpenBLAS picked \(picked), without FMA, on this processor with \(processor.vectorSummary): resnext-ddp restarted itself with OPENBLAS_CORETYPE=\(family); set OPENBLAS_CORETYPE to choose another)"
        case .restart(let picked, let family):
            return
                "warning: OpenBLAS runs its \(picked) kernels, without FMA, on this processor with \(processor.vectorSummary), and resnext-ddp could not restart itself with the right ones: matrix products may run several times slower; set OPENBLAS_CORETYPE=\(family) (with mpirun: -x OPENBLAS_CORETYPE=\(family))"
        }
    }
}
