import ResNeXt

/// The ceiling `bench` compares the step with: a 1024 x 1024 x 1024 SGEMM on the current OpenBLAS
/// threads, its buffers made (and one product run) once, then timed on demand between the steps.
/// A machine shared with other work drifts by 5-25 % within a minute here, so a ceiling timed
/// once after the steps could fall on a faster or slower moment than the steps did.
public final class SGEMMProbe {
    static let size = 1024
    /// Samples taken after the last step, so that one timed step still gets a median of several.
    public static let samplesAfter = 3
    let a = Buffer<Float>(count: size * size), b = Buffer<Float>(count: size * size), c = Buffer<Float>(count: size * size)
    /// GFLOP/s of each product timed.
    public private(set) var samples: [Double] = []

    public init() {
        for i in 0..<(Self.size * Self.size) { a.base[i] = Float(i % 7) * 1e-3; b.base[i] = Float(i % 5) * 1e-3 }
        _ = time()  // touches c and OpenBLAS's buffers
    }

    /// Times one product and keeps its rate.
    public func sample() { samples.append(2 * Double(Self.size * Self.size * Self.size) / time() / 1e9) }

    private func time() -> Double {
        let t0 = Profile.now()
        Float.gemm(
            transA: false, transB: false, m: Self.size, n: Self.size, k: Self.size, alpha: 1, a: a.base, lda: Self.size,
            b: b.base, ldb: Self.size, beta: 0, c: c.base, ldc: Self.size)
        return Profile.now() - t0
    }
}
