import Foundation
import ResNeXt
import ResNeXtMPI
import ResNeXtTrain

/// `resnext-ddp-collectives`: run under mpirun, checks the MPI communicator's nonblocking sums,
/// float32 (MPI_SUM) and bfloat16 (the C shim's MPI_Op), on every rank against the exact sum of
/// the ranks' values, for buffers small and large (Open MPI picks its algorithm by size), odd
/// lengths included:
/// - every rank ends with the same bits;
/// - with 2 ranks the result is exactly the sum rounded once: a + b in float32, bfloat16(a + b)
///   with ties to even (`bfloat16Bits`);
/// - with P ranks each value is within (P - 1) roundings of the exact sum (Higham's bound for a
///   sum in any order): |result - sum| <= gamma(P - 1) * sum |x_i|, gamma(n) = n u / (1 - n u),
///   u = 2^-24 for float32; for bfloat16 u = 2^-8 + 2^-24 (it keeps 8 significant bits, so one
///   rounding moves a value by at most 2^-8 of it; the float32 addition before it, exact unless
///   the exponents are far apart, by at most 2^-24).
/// Prints one line per type and length on rank 0; exits 1 after any failure. Test machinery only.
@main
struct CollectiveCheck {
    static func main() throws {
        let comm = try MPICommunicator()
        var failures: [String] = []
        for bfloat16 in [false, true] {
            for count in [1, 7, 1_000, 65_537, 1_048_575] { failures += check(comm, count: count, bfloat16: bfloat16) }
        }
        var failed = [Double(failures.isEmpty ? 0 : 1)]
        comm.allreduceSum(&failed)
        if let first = failures.first {
            FileHandleOutput.standardError.write("rank \(comm.rank): \(first)\n")
        }
        comm.finish()
        exit(failed[0] == 0 ? 0 : 1)
    }

    /// Values of every magnitude, with signs that make sums cancel, a few exact ties, and zeros.
    static func values(rank: Int, count: Int) -> [Float] {
        var rng = SplitMix64(seed: 1_000 + UInt64(rank))
        return (0..<count).map { i in
            switch i % 5 {
            case 0: return Float(rng.nextNormal()) * Float(pow(2, Double(rng.nextInt(below: 60)) - 40))
            case 1: return Float(rng.nextNormal()) * 1e-3
            case 2: return (rank % 2 == 0 ? 1 : -1) * (1 + Float(i % 128) / 128)
            case 3: return Float(bitPattern: 0x3F80_8000 | UInt32(rng.nextInt(below: 2)) << 16)
            default: return rank == 0 ? 0 : Float(rng.nextNormal())
            }
        }
    }

    static func widen(_ h: UInt16) -> Float { Float(bitPattern: UInt32(h) << 16) }

    static func check(_ comm: MPICommunicator, count: Int, bfloat16: Bool) -> [String] {
        let p = comm.size
        let what = "\(count) \(bfloat16 ? "bfloat16" : "float32") values"
        // every rank's values as they go in (bfloat16: rounded), and this rank's result as floats
        var all = [[Float]](repeating: [], count: p)
        for r in 0..<p { all[r] = values(rank: r, count: count).map { bfloat16 ? widen(bfloat16Bits($0)) : $0 } }
        var result: [Float]
        if bfloat16 {
            var bits = values(rank: comm.rank, count: count).map(bfloat16Bits)
            bits.withUnsafeMutableBufferPointer { comm.startAllreduceSumBFloat16($0.baseAddress!, count: count) }
            comm.waitAll()
            result = bits.map(widen)
        } else {
            result = values(rank: comm.rank, count: count)
            result.withUnsafeMutableBufferPointer { comm.startAllreduceSum($0.baseAddress!, count: count) }
            comm.waitAll()
        }
        var failures: [String] = []
        // the same bits on every rank: rank 0's result to all, compared
        var root = result
        root.withUnsafeMutableBytes { comm.broadcast($0.baseAddress!, bytes: $0.count, root: 0) }
        if let i = (0..<count).first(where: { root[$0].bitPattern != result[$0].bitPattern }) {
            failures.append("\(what): element \(i) is \(result[i]) here but \(root[i]) on rank 0")
        }
        var worst = 0.0
        let u = bfloat16 ? 0x1p-8 + 0x1p-24 : 0x1p-24, gamma = Double(p - 1) * u / (1 - Double(p - 1) * u)
        for i in 0..<count {
            if p == 2 {
                let sum = all[0][i] + all[1][i]
                let expected = bfloat16 ? widen(bfloat16Bits(sum)) : sum
                if result[i].bitPattern != expected.bitPattern {
                    failures.append("\(what): element \(i): \(all[0][i]) + \(all[1][i]) gave \(result[i]), not \(expected)")
                }
            }
            // float64 sums of these are exact enough: 24-bit mantissas over 60 binades need 84 bits
            // at most, and float64's rounding is 2^-53 of the sum of magnitudes
            let exact = all.reduce(0.0) { $0 + Double($1[i]) }
            let magnitude = all.reduce(0.0) { $0 + abs(Double($1[i])) }
            let error = abs(Double(result[i]) - exact)
            if error > gamma * magnitude + 0x1p-50 * magnitude {
                failures.append("\(what): element \(i) is \(result[i]), the exact sum \(exact): off by \(error), more than \(gamma * magnitude)")
            }
            if magnitude > 0 { worst = max(worst, error / magnitude) }
        }
        if comm.isRoot {
            print(
                "sum of \(what) over \(p) ranks: worst error \(String(format: "%.2e", worst)) of sum |x| (bound \(String(format: "%.2e", gamma))), \(failures.isEmpty ? "ok" : "FAILED")"
            )
        }
        return failures
    }
}
