import Foundation
import ResNeXt
import Testing

/// The nearest bfloat16 to x by the definition: of the two bfloat16 values around x (the one
/// truncation gives and the next one away from zero, infinity past the largest), the nearer in
/// float64, the one with an even last bit on a tie; NaN gives a quiet NaN.
func referenceBFloat16(_ x: Float) -> UInt16 {
    let bits = x.bitPattern
    let truncated = UInt16(bits >> 16)
    if x.isNaN { return truncated | 0x0040 }
    let magnitude = truncated & 0x7FFF
    if magnitude >= 0x7F80 { return truncated }  // infinity
    let exponent = Int(magnitude >> 7)
    let ulp = exponent == 0 ? 0x1p-133 : pow(2.0, Double(exponent - 127 - 7))
    let below = abs(Double(Float(bitPattern: UInt32(truncated) << 16)))
    let distance = abs(Double(x)) - below
    if distance < ulp / 2 { return truncated }
    if distance > ulp / 2 { return truncated + 1 }
    return truncated & 1 == 0 ? truncated : truncated + 1
}

/// `roundToBFloat16` and `widenBFloat16` (Kernels/BFloat16.swift), the gradients' wire format with
/// `--grad-dtype bf16`, against the definition.
@Suite struct BFloat16Tests {
    /// Random bit patterns (every binade, subnormals, both signs) and the edge cases: exact ties
    /// with an even and an odd last bit, the largest float (rounds to infinity), the largest
    /// bfloat16, zeros, infinities, NaNs whose payload is only in the low bits (truncation would
    /// make them infinities). Lengths that leave 0 to 15 elements after the vector loop.
    @Test func roundingMatchesTheDefinition() {
        var rng = SplitMix64(seed: 11)
        var values = (0..<20_000).map { _ in Float(bitPattern: UInt32(truncatingIfNeeded: rng.next())) }
        let edges: [UInt32] = [
            0x3F80_8000, 0x3F81_8000, 0xBF80_8000, 0xBF81_8000, 0x3F80_7FFF, 0x3F80_8001, 0x7F7F_FFFF, 0xFF7F_FFFF,
            0x7F7F_0000, 0x7F7F_7FFF, 0x7F7F_8000, 0x0000_0000, 0x8000_0000, 0x0000_0001, 0x0000_8000, 0x0001_8000,
            0x007F_FFFF, 0x7F80_0000, 0xFF80_0000, 0x7F80_0001, 0xFF80_0001, 0x7FC0_0000, 0x7F80_8000,
        ]
        values += edges.map(Float.init(bitPattern:))
        for count in [values.count] + Array(0...17) + [31, 33, 1_001] {
            var out = [UInt16](repeating: 0xAAAA, count: count + 1)
            roundToBFloat16(values, &out, count: count)
            #expect(out[count] == 0xAAAA, "\(count) values: wrote past the end")
            for i in 0..<count {
                let want = referenceBFloat16(values[i])
                let ok = values[i].isNaN ? Float(bitPattern: UInt32(out[i]) << 16).isNaN : out[i] == want
                if !ok {
                    Issue.record(
                        "\(count) values: \(values[i]) (0x\(String(values[i].bitPattern, radix: 16))) gave 0x\(String(out[i], radix: 16)), not 0x\(String(want, radix: 16))"
                    )
                    break
                }
            }
            #expect(out.prefix(count).elementsEqual(values.prefix(count).map(bfloat16Bits)))
        }
        // exact ties go to the even neighbour, in both directions
        #expect(bfloat16Bits(Float(bitPattern: 0x3F80_8000)) == 0x3F80)
        #expect(bfloat16Bits(Float(bitPattern: 0x3F81_8000)) == 0x3F82)
        #expect(bfloat16Bits(.greatestFiniteMagnitude) == 0x7F80)
    }

    /// Every one of the 65,536 bfloat16 values widens to the float32 with those top bits and
    /// rounds back to itself (NaNs stay NaNs).
    @Test func everyValueWidensExactlyAndRoundsBack() {
        let all = (0...UInt16.max).map { $0 }
        var floats = [Float](repeating: 0, count: all.count)
        widenBFloat16(all, &floats, count: all.count)
        var back = [UInt16](repeating: 0, count: all.count)
        roundToBFloat16(floats, &back, count: all.count)
        for (i, h) in all.enumerated() {
            #expect(floats[i].bitPattern == UInt32(h) << 16)
            if floats[i].isNaN {
                #expect(Float(bitPattern: UInt32(back[i]) << 16).isNaN)
            } else if back[i] != h {
                Issue.record("0x\(String(h, radix: 16)) came back as 0x\(String(back[i], radix: 16))")
            }
        }
    }
}
