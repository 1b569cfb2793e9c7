/// Deterministic random numbers, identical on every machine and build: SplitMix64 for the
/// stream, 24-bit floats from its top bits, Box-Muller (in Double) for normals.
/// Used for initialisation, shuffling and augmentation, always from an explicit seed.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    public private(set) var state: UInt64

    public init(seed: UInt64) { state = seed }

    /// A generator for an independent stream named by `(seed, a, b)`, e.g. (seed, epoch, image).
    public init(seed: UInt64, _ a: UInt64, _ b: UInt64 = 0) {
        var s = SplitMix64(seed: seed ^ 0x9E37_79B9_7F4A_7C15)
        var t = SplitMix64(seed: s.next() ^ a &* 0xD1B5_4A32_D192_ED03)
        var u = SplitMix64(seed: t.next() ^ b &* 0x8CB9_2BA7_2F3D_8DD7)
        state = u.next()
    }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Uniform in [0, 1) with 53 random bits.
    public mutating func nextUnitDouble() -> Double {
        Double(next() >> 11) * 0x1.0p-53
    }

    /// Standard normal by Box-Muller, one value per call (the pair's second value is dropped,
    /// so the stream position depends only on how many values were drawn).
    public mutating func nextNormal() -> Double {
        var u1 = nextUnitDouble()
        while u1 <= 0 { u1 = nextUnitDouble() }
        let u2 = nextUnitDouble()
        return (-2 * _log(u1)).squareRoot() * _cos(2 * Double.pi * u2)
    }

    /// Uniform integer in 0..<n without modulo bias.
    public mutating func nextInt(below n: Int) -> Int {
        precondition(n > 0)
        return Int(next(upperBound: UInt64(n)))
    }
}

@inline(__always) private func _log(_ x: Double) -> Double {
    #if canImport(Glibc)
        return Glibc.log(x)
    #else
        return Darwin.log(x)
    #endif
}

@inline(__always) private func _cos(_ x: Double) -> Double {
    #if canImport(Glibc)
        return Glibc.cos(x)
    #else
        return Darwin.cos(x)
    #endif
}

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif
