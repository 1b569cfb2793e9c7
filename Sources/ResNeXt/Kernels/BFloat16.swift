/// bfloat16: the top 16 bits of a float32 (sign, the same 8-bit exponent, 7 mantissa bits), as
/// `torch.bfloat16`. Gradients cross the network in it with `--grad-dtype bf16`: half the bytes of
/// float32 and float32's range, so no loss scaling is needed (fp16 would need it).

/// out[i] = x[i] rounded to the nearest bfloat16, ties to even (as PyTorch's `.to(torch.bfloat16)`);
/// a NaN stays a NaN (quiet), infinities stay infinite, a finite value past the largest bfloat16
/// rounds to infinity.
public func roundToBFloat16(_ x: UnsafePointer<Float>, _ out: UnsafeMutablePointer<UInt16>, count: Int) {
    let raw = UnsafeRawPointer(x)
    let outRaw = UnsafeMutableRawPointer(out)
    var i = 0
    while i + 16 <= count {
        let bits = raw.loadUnaligned(fromByteOffset: i * 4, as: SIMD16<UInt32>.self)
        let rounded = (bits &+ ((bits &>> 16) & 1) &+ 0x7FFF) &>> 16
        let isNaN = (bits & 0x7FFF_FFFF) .> 0x7F80_0000
        let quiet = (bits &>> 16) | 0x0040
        outRaw.storeBytes(
            of: SIMD16<UInt16>(truncatingIfNeeded: rounded.replacing(with: quiet, where: isNaN)), toByteOffset: i * 2, as: SIMD16<UInt16>.self)
        i += 16
    }
    while i < count {
        out[i] = bfloat16Bits(x[i])
        i += 1
    }
}

/// The nearest bfloat16 to x, ties to even, as its bits.
@inline(__always)
public func bfloat16Bits(_ x: Float) -> UInt16 {
    let bits = x.bitPattern
    if x.isNaN { return UInt16(truncatingIfNeeded: bits >> 16) | 0x0040 }
    return UInt16(truncatingIfNeeded: (bits &+ ((bits >> 16) & 1) &+ 0x7FFF) >> 16)
}

/// out[i] = x[i] as float32 (exact: every bfloat16 is a float32).
public func widenBFloat16(_ x: UnsafePointer<UInt16>, _ out: UnsafeMutablePointer<Float>, count: Int) {
    let raw = UnsafeRawPointer(x)
    let outRaw = UnsafeMutableRawPointer(out)
    var i = 0
    while i + 16 <= count {
        let half = raw.loadUnaligned(fromByteOffset: i * 2, as: SIMD16<UInt16>.self)
        outRaw.storeBytes(of: SIMD16<UInt32>(truncatingIfNeeded: half) &<< 16, toByteOffset: i * 4, as: SIMD16<UInt32>.self)
        i += 16
    }
    while i < count {
        out[i] = Float(bitPattern: UInt32(x[i]) << 16)
        i += 1
    }
}
