import Foundation
import ResNeXt
import ResNeXtMPI
import ResNeXtTrain

/// `resnext-ddp-collectives`: run under mpirun, checks the MPI communicator's bfloat16 sum (the C
/// shim's MPI_Op) on every rank against the exact sum of the ranks' values, for buffers small
/// (Open MPI's recursive doubling) and large (its ring, in segments), odd lengths included:
/// - every rank ends with the same bits;
/// - with 2 ranks the result is exactly bfloat16(a + b), ties to even (`bfloat16Bits`);
/// - with P ranks each value is within (P - 1) roundings of the exact sum (Higham's bound for a
///   sum in any order): |result - sum| <= gamma(P - 1) * sum |x_i|, gamma(n) = n u / (1 - n u),
///   u = 2^-8 + 2^-24 (bfloat16 keeps 8 significant bits, so one rounding moves a value by at
///   most 2^-8 of it; the float32 addition before it, exact unless the exponents are far apart,
///   by at most 2^-24).
/// Prints one line per length on rank 0; exits 1 with the first failure. Test machinery only.
@main
struct CollectiveCheck {
    static func main() throws {
        let comm = try MPICommunicator()
        var failures: [String] = []
        for count in [1, 7, 1_000, 65_537, 1_048_575] {
            failures += check(comm, count: count)
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

    static func check(_ comm: MPICommunicator, count: Int) -> [String] {
        let p = comm.size
        // every rank's values rounded to bfloat16, and their float64 sum (exact enough: 8-bit
        // mantissas over 60 binades need at most 68 bits, float64 rounding is 2^-53 of them)
        var all = [[Float]](repeating: [], count: p)
        for r in 0..<p { all[r] = values(rank: r, count: count).map { Float(bitPattern: UInt32(bfloat16Bits($0)) << 16) } }
        var bits = values(rank: comm.rank, count: count).map(bfloat16Bits)
        bits.withUnsafeMutableBufferPointer { comm.startAllreduceSumBFloat16($0.baseAddress!, count: count) }
        comm.waitAll()
        var failures: [String] = []
        // the same bits on every rank: rank 0's result to all, compared
        var root = bits
        root.withUnsafeMutableBytes { comm.broadcast($0.baseAddress!, bytes: $0.count, root: 0) }
        if let i = (0..<count).first(where: { root[$0] != bits[$0] }) {
            failures.append("\(count) values: element \(i) is \(bits[i]) here but \(root[i]) on rank 0")
        }
        var worst = 0.0
        let u = 0x1p-8 + 0x1p-24, gamma = Double(p - 1) * u / (1 - Double(p - 1) * u)
        for i in 0..<count {
            let result = Float(bitPattern: UInt32(bits[i]) << 16)
            if p == 2 {
                let expected = bfloat16Bits(all[0][i] + all[1][i])
                if bits[i] != expected {
                    failures.append(
                        "\(count) values: element \(i): \(all[0][i]) + \(all[1][i]) gave \(result), not \(Float(bitPattern: UInt32(expected) << 16))")
                }
            }
            let exact = all.reduce(0.0) { $0 + Double($1[i]) }
            let magnitude = all.reduce(0.0) { $0 + abs(Double($1[i])) }
            let bound = gamma * magnitude
            let error = abs(Double(result) - exact)
            if error > bound {
                failures.append("\(count) values: element \(i) is \(result), the exact sum \(exact): off by \(error), more than \(bound)")
            }
            if magnitude > 0 { worst = max(worst, error / magnitude) }
        }
        if comm.isRoot {
            print(
                "bfloat16 sum of \(count) values over \(p) ranks: worst error \(String(format: "%.2e", worst)) of sum |x|, \(failures.isEmpty ? "ok" : "FAILED")"
            )
        }
        return failures
    }
}
