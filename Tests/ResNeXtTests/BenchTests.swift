import Foundation
import ResNeXt
import ResNeXtBench
import Testing

/// `resnext-ddp bench`: its figures, profile, alternation, tuning and layer tables, in one
/// process and under real `mpirun`.
@Suite(.serialized) struct BenchTests {
    /// Under mpirun, `bench --profile` shows the wait for the slower rank (the barrier before the
    /// allreduce) on its own row rather than leaving it in "unaccounted".
    @Test func benchProfileNamesTheWait() throws {
        let r = try MPI.run(2, ["bench"] + MPITests.tiny + ["--batch-size", "8", "--bn-group", "4", "--steps", "1", "--profile"])
        #expect(r.status == 0, "\(r.output)")
        #expect(r.stdout.contains("| waiting for the slower rank (bench's barrier before the allreduce) |"), "\(r.stdout)")
    }

    /// `bench` times its ceiling, a 1024^3 SGEMM, after each timed step and three times after
    /// the last: the line and the JSON give the samples' median and range, the step's share of
    /// the median, and the median share of each step against the SGEMM right after it.
    @Test func benchTimesSGEMMBetweenSteps() throws {
        let args = ["bench"] + MPITests.tiny + ["--batch-size", "8", "--bn-group", "4", "--steps", "2"]
        let r = try CLI.run(args)
        #expect(r.status == 0, "\(r.output)")
        let line = r.stdout.split(separator: "\n").first { $0.hasPrefix("SGEMM 1024x1024x1024 between the steps: ") }
        // R GFLOP/s per process (median of N, LO-HI); the step runs at S % of it (...: median A %, LO-HI %)
        let numbers = line.map { $0.split(whereSeparator: { " (),;-%:".contains($0) }).compactMap { Double($0) } } ?? []
        #expect(numbers.count == 8, "\(r.stdout)")  // 1024x1024x1024 is no number
        if numbers.count == 8 {
            let (rate, samples, lo, hi, share, adjacent, adjacentLo, adjacentHi) =
                (numbers[0], numbers[1], numbers[2], numbers[3], numbers[4], numbers[5], numbers[6], numbers[7])
            #expect(samples == 5 && lo > 0 && lo <= rate && rate <= hi, "\(line!)")
            #expect(share > 0 && adjacentLo <= adjacent && adjacent <= adjacentHi, "\(line!)")
        }
        let json = try CLI.run(args + ["--json"])
        #expect(json.status == 0, "\(json.output)")
        let field = { (name: String) in
            json.stdout.split(separator: ",").first { $0.hasPrefix("\"\(name)\":") }.flatMap { Double($0.dropFirst(name.count + 3)) }
        }
        #expect(field("sgemm_samples") == 5, "\(json.stdout)")
        if let rate = field("sgemm_gflops_per_process"), let lo = field("sgemm_min"), let hi = field("sgemm_max") {
            #expect(lo <= rate && rate <= hi, "\(json.stdout)")
        } else {
            Issue.record("no SGEMM figures: \(json.stdout)")
        }
        #expect((field("step_share_of_adjacent_sgemm") ?? 0) > 0, "\(json.stdout)")
    }

    /// `bench --alternate` times each setting of a switch in the same run: the line names both
    /// medians, each within its steps' range, and their ratio; the JSON carries both medians and
    /// stays one object.
    @Test func benchAlternates() throws {
        let args = ["bench"] + MPITests.tiny + ["--batch-size", "8", "--bn-group", "4", "--steps", "3", "--alternate", "bn-on-read"]
        let r = try CLI.run(args)
        #expect(r.status == 0, "\(r.output)")
        #expect(r.stdout.contains("median of 6 steps: "), "\(r.stdout)")
        let prefix = "--alternate bn-on-read (\(Alternation.bnOnRead.settings)), 3 steps each in the same run: "
        let line = r.stdout.split(separator: "\n").first { $0.hasPrefix(prefix + "off ") }
        // off M ms/step (LO-HI), on M ms/step (LO-HI); on/off R; on/off of the P adjacent pairs: median M (LO-HI)
        let numbers = line.map { $0.dropFirst(prefix.count).split(whereSeparator: { " (),;-".contains($0) }).compactMap { Double($0) } } ?? []
        // the seven figures, then the pairs (3 steps each: 3 pairs)
        #expect(numbers.count == 11, "\(r.stdout)")
        if numbers.count == 11 {
            let (off, offLo, offHi, on, onLo, onHi, ratio) = (numbers[0], numbers[1], numbers[2], numbers[3], numbers[4], numbers[5], numbers[6])
            #expect(off > 0 && offLo <= off && off <= offHi && onLo <= on && on <= onHi, "\(line!)")
            let (pairs, pairMedian, pairLo, pairHi) = (numbers[7], numbers[8], numbers[9], numbers[10])
            #expect(pairs == 3 && pairLo <= pairMedian && pairMedian <= pairHi && pairLo > 0, "\(line!)")
            // every pair's ratio lies within what the two settings' ranges allow (printed to 0.1 ms)
            #expect(pairLo >= (onLo - 0.05) / (offHi + 0.05) - 0.0005 && pairHi <= (onHi + 0.05) / (offLo - 0.05) + 0.0005, "\(line!)")
            // the medians are printed to 0.1 ms, the ratio to 0.001
            let rounding = on / off * (0.05 / on + 0.05 / off) + 0.0005
            #expect(abs(ratio - on / off) <= rounding, "\(line!)")
        }
        let json = try CLI.run(args + ["--json"])
        #expect(json.status == 0 && json.stdout.contains("\"alternate\":\"bn-on-read\""), "\(json.output)")
        for key in ["ms_per_step_off", "ms_per_step_on", "on_off_pair_median"] {
            #expect(json.stdout.contains("\"\(key)\":"), "\(key): \(json.output)")
        }
        #expect(!json.stdout.contains("--alternate"), "one JSON object only: \(json.stdout)")
    }

    /// `bench --tune-convolutions` under mpirun: a table with one row per distinct convolution,
    /// the path kept among those tried; the JSON names the paths kept. With --alternate (which
    /// toggles a path the tuning fixes) it refuses in one line.
    @Test func benchTunesConvolutions() throws {
        let args = ["bench"] + MPITests.tiny + ["--batch-size", "8", "--bn-group", "4", "--steps", "1", "--tune-convolutions"]
        let r = try MPI.run(2, args)
        #expect(r.status == 0, "\(r.output)")
        #expect(r.stdout.contains("--tune-convolutions: "), "\(r.stdout)")
        let rows = r.stdout.split(separator: "\n").filter { $0.hasPrefix("| conv |") || $0.hasPrefix("| stage") }
        #expect(rows.count >= 6, "\(r.stdout)")
        for row in rows {
            let cells = row.split(separator: "|").map { $0.trimmingCharacters(in: .whitespaces) }
            #expect(cells.count == 5 && cells[3].contains(cells[4]), "the path kept is one of those tried: \(row)")
        }
        let json = try MPI.run(2, args + ["--json"])
        #expect(json.status == 0 && json.stdout.contains("\"tuned_paths\":\""), "\(json.output)")
        #expect(json.stdout.contains("\"blas_core\":\"\(blasCoreName)\""), "the JSON names OpenBLAS's kernels: \(json.output)")
        let bad = try CLI.run(args + ["--alternate", "direct3x3"])
        #expect(bad.status != 0 && bad.stderr.contains("--tune-convolutions fixes each layer's path"), "\(bad.output)")
        // --alternate tuned: the default paths against the tuned ones, step by step, after the table
        let alternating = try MPI.run(
            2, ["bench"] + MPITests.tiny + ["--batch-size", "8", "--bn-group", "4", "--steps", "2", "--alternate", "tuned"])
        #expect(alternating.status == 0, "\(alternating.output)")
        #expect(alternating.stdout.contains("--tune-convolutions: ") && alternating.stdout.contains("median of 4 steps: "), "\(alternating.stdout)")
        #expect(
            alternating.stdout.contains("--alternate tuned (off: the default paths, on: the tuned ones), 2 steps each in the same run: off "),
            "\(alternating.stdout)")
    }

    /// `bench --layers` times each distinct grouped 3x3 convolution four ways (depth 11: one per
    /// stage, 3 shapes), in one process; under mpirun it refuses in one line.
    @Test func benchLayers() throws {
        let args = ["bench"] + MPITests.tiny + ["--batch-size", "8", "--bn-group", "4", "--steps", "1", "--layers"]
        let one = try CLI.run(args)
        #expect(one.status == 0, "\(one.output)")
        let tables = one.stdout.components(separatedBy: "\n\n")
        #expect(tables.count == 3, "\(one.stdout)")
        // the paths of each grouped 3x3 shape (4) and of each 1x1 stride-1 shape (OpenBLAS, ours)
        let rows = tables[0].split(separator: "\n").filter { $0.hasPrefix("| stage") }
        let grouped = rows.filter { $0.contains("3x3 |") }, pointwise = rows.filter { $0.contains("1x1 |") }
        #expect(grouped.count == 12 && rows.count == grouped.count + pointwise.count, "\(one.stdout)")
        #expect(Set(grouped.map { $0.split(separator: "|")[2] }).count == 4, "\(one.stdout)")
        let pointwiseShapes = Set(pointwise.map { $0.split(separator: "|")[1] })
        #expect(!pointwiseShapes.isEmpty && pointwise.count == 2 * pointwiseShapes.count, "\(one.stdout)")
        #expect(pointwise.filter { $0.contains("| OpenBLAS GEMM |") }.count == pointwiseShapes.count, "\(one.stdout)")
        // every convolution: one row per distinct shape, the layer counts adding up to the
        // model's convolutions (stem, 3 per block, 3 projection shortcuts), and the per-step sum
        let all = tables[1].split(separator: "\n").filter { $0.hasPrefix("| conv") || $0.hasPrefix("| stage") }
        let counts = all.map { Int($0.split(separator: "|")[2].trimmingCharacters(in: .whitespaces)) ?? 0 }
        let perStep = all.map { Double($0.split(separator: "|")[5].trimmingCharacters(in: .whitespaces)) ?? .nan }
        let layers: Int = counts.reduce(0, +), expected = 1 + 3 * 3 + 3
        #expect(layers == expected, "\(one.stdout)")
        let total = one.stdout.split(separator: "\n").first { $0.hasPrefix("all convolutions, each on its own: ") }
        let stated: Double? = total.flatMap { Double($0.split(separator: " ")[6]) }
        let summed: Double = perStep.reduce(0, +)
        let rounding: Double = 0.05 * Double(all.count) + 0.1
        #expect(stated != nil && abs(stated! - summed) <= rounding, "\(one.stdout)")
        // the same layers within the step: no negative time, a positive total that the rows sum
        // to, and that total part of the step
        let inStep = all.map { Double($0.split(separator: "|")[7].trimmingCharacters(in: .whitespaces)) ?? .nan }
        #expect(inStep.allSatisfy { $0 >= 0 } && inStep.reduce(0, +) > 0, "\(one.stdout)")
        let inStepTotal = one.stdout.split(separator: "\n").first { $0.hasPrefix("the same convolutions within the steps: ") }
        let statedInStep: Double? = inStepTotal.flatMap { Double($0.split(separator: " ")[6]) }
        #expect(statedInStep != nil && abs(statedInStep! - inStep.reduce(0, +)) <= rounding, "\(one.stdout)")
        let step = one.stdout.split(separator: "\n").first { $0.hasPrefix("median of ") }
        let stepMs: Double? = step.flatMap { Double($0.split(separator: " ")[4]) }
        #expect(stepMs != nil && statedInStep != nil && statedInStep! < stepMs!, "\(one.stdout)")
        // by kind: the stem, 1x1 stride 1, 1x1 stride 2 (shortcuts), 3x3 grouped stride 1 and 2,
        // with every layer once, the shares of the arithmetic adding up to 100 % and the in-step
        // times to the in-step total
        let kinds = tables[2].split(separator: "\n").filter { $0.hasPrefix("| ") && !$0.hasPrefix("| kind") }
            .map { $0.split(separator: "|").map { $0.trimmingCharacters(in: .whitespaces) } }
        #expect(
            Set(kinds.map { $0[0] }) == [
                "stem (3x3, no input gradient)", "1x1, stride 1", "1x1, stride 2 (projection shortcuts)",
                "3x3 grouped, stride 1", "3x3 grouped, stride 2",
            ], "\(one.stdout)")
        #expect(kinds.map { Int($0[1]) ?? 0 }.reduce(0, +) == expected, "\(one.stdout)")
        let shares = kinds.map { Double($0[2].replacingOccurrences(of: " %", with: "")) ?? .nan }
        #expect(abs(shares.reduce(0, +) - 100) <= Double(kinds.count), "\(one.stdout)")
        let kindMs = kinds.map { Double($0[3]) ?? .nan }
        #expect(statedInStep != nil && abs(kindMs.reduce(0, +) - statedInStep!) <= rounding, "\(one.stdout)")
        // the budget: 70 % of the SGEMM as a step, i.e. the step scaled by its own share of the
        // SGEMM over 0.7 (from the effective GFLOP/s of the median line and the SGEMM line)
        let budget = one.stdout.split(separator: "\n").first { $0.hasPrefix("70 % of the SGEMM above is a step of ") }
        let targetMs: Double? = budget.flatMap { Double($0.split(separator: " ")[10]) }
        let sgemmLine = one.stdout.split(separator: "\n").first { $0.hasPrefix("SGEMM 1024x1024x1024 between the steps: ") }
        let sgemm: Double? = sgemmLine.flatMap { Double($0.split(separator: " ")[5]) }
        let effective: Double? = step.flatMap { line in
            let words = line.split(separator: " ")
            return words.firstIndex(of: "effective,").flatMap { Double(words[$0 - 2]) }
        }
        if let targetMs, let sgemm, let effective, let stepMs {
            let expectedMs = stepMs * effective / sgemm / 0.7
            #expect(abs(targetMs - expectedMs) <= 0.05 * expectedMs + 0.15, "\(one.stdout)")
        } else {
            Issue.record("budget line, SGEMM line or median line unreadable: \(one.stdout)")
        }
        let two = try MPI.run(2, args)
        #expect(two.status != 0)
        #expect(two.output.contains("error: --layers times single layers; run it in one process, without mpirun"), "\(two.output)")
    }

    /// `bench --path openblas` runs every convolution through OpenBLAS (the JSON names each
    /// layer's path); an unknown path, or one with --tune-convolutions, is refused in one line.
    @Test func benchTakesOnePathForEveryLayer() throws {
        let args = ["bench"] + MPITests.tiny + ["--batch-size", "16", "--bn-group", "16", "--steps", "1"]
        let r = try CLI.run(args + ["--path", "openblas", "--json"])
        #expect(r.status == 0, "\(r.output)")
        let report = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any]
        let paths = (report?["paths"] as? String)?.split(separator: ";") ?? []
        // depth 11: the stem, 3 blocks of 3 convolutions, 3 projection shortcuts
        #expect(paths.count == 13 && paths.allSatisfy { $0.hasSuffix("=openblas") }, "\(r.stdout)")
        let text = try CLI.run(args + ["--path", "openblas"])
        #expect(text.status == 0 && text.stdout.contains("--path openblas: every convolution on that path"), "\(text.output)")
        let bad = try CLI.run(args + ["--path", "fast"])
        #expect(
            bad.status != 0 && bad.stderr.contains("--path fast: expected one of default, openblas, pointwise, direct, direct-weights"),
            "\(bad.output)")
        let both = try CLI.run(args + ["--path", "openblas", "--tune-convolutions"])
        #expect(both.status != 0 && both.stderr.contains("--path sets every layer's path"), "\(both.output)")
    }
}
