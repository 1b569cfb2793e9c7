import Foundation
import ResNeXt
import ResNeXtTrain

/// A published test error for a model, to set beside ours.
public struct PublishedResult: Encodable, Sendable {
    public let testErrorPercent: Double
    public let source: String

    /// Table 7 of Xie et al. 2017 (CIFAR-10, 300 epochs, batch 128 over 8 GPUs) and the PyTorch
    /// implementation resnext-ddp started from (hysts/pytorch_resnext), by "depth cardinality x width".
    public static let known: [String: PublishedResult] = [
        "29 8x64": PublishedResult(testErrorPercent: 3.65, source: "paper (Xie et al. 2017, Table 7; 300 epochs)"),
        "29 16x64": PublishedResult(testErrorPercent: 3.58, source: "paper (Xie et al. 2017, Table 7; 300 epochs)"),
        "29 4x64": PublishedResult(testErrorPercent: 3.89, source: "hysts/pytorch_resnext (median of 3 runs; 300 epochs)"),
    ]
}

/// One configuration (every setting but the seed and the operational ones) over its runs.
public struct ConfigurationSummary: Encodable {
    public let label: String
    public let model: String
    public let runs: Int
    public let seeds: [Int]
    public let folders: [String]
    public let epochsDone: [Double]
    public let epochsPlanned: Int
    /// The epoch the runs are compared at: the last epoch every run has reached (the planned last
    /// epoch once all have finished), so that a run still going is not averaged with finished ones.
    public let comparedAtEpoch: Int?
    /// Test error (%) of each run at that epoch, and over the runs: mean, sample standard
    /// deviation (n - 1; null for one run), min, max.
    public let finalTestErrors: [Double]
    public let finalTestErrorMean: Double?
    public let finalTestErrorStd: Double?
    public let finalTestErrorMin: Double?
    public let finalTestErrorMax: Double?
    /// Each run's lowest test error (%) and its epoch.
    public let bestTestErrors: [Double]
    public let bestEpochs: [Int]
    /// Median of the epochs' images/s over all runs; each run's training time: the sum of its
    /// epochs' seconds (the steps; evaluation and checkpoints add a few per cent).
    public let imagesPerS: Double?
    public let trainingHoursPerRun: [Double]
    public let processes: [Int]
    public let published: PublishedResult?
}

/// The report over run folders: configurations in the order their first run was given.
public struct Summary: Encodable {
    public let configurations: [ConfigurationSummary]

    /// Runs grouped by configuration, the groups labelled by the model, the schedule and epochs,
    /// and whichever other settings tell the report's configurations apart.
    public init(runs: [RunRecord]) {
        var keys: [String] = []
        var groups: [String: [RunRecord]] = [:]
        for run in runs {
            let key = run.configurationKey
            if groups[key] == nil { keys.append(key) }
            groups[key, default: []].append(run)
        }
        let firsts = keys.map { groups[$0]![0] }
        let differing = Self.differingSettings(firsts)
        configurations = keys.map { key in
            let members = groups[key]!.sorted { $0.seed < $1.seed }
            return Self.summarize(members, label: Self.label(members[0], differing: differing))
        }
    }

    /// Settings (other than those in every label) whose values differ between configurations.
    static func differingSettings(_ runs: [RunRecord]) -> [String] {
        let always: Set<String> = ["depth", "cardinality", "base_channels", "schedule", "epochs"]
        let keys = Set(runs.flatMap { $0.settings.keys }).union(RunRecord.defaults.keys)
            .subtracting(RunRecord.operationalSettings).subtracting(always)
        return keys.sorted().filter { key in Set(runs.map { $0.setting(key) }).count > 1 }
    }

    static func label(_ run: RunRecord, differing: [String]) -> String {
        let name = "\(run.setting("depth"))-\(run.setting("cardinality"))x\(run.setting("base_channels"))d"
        var parts = ["\(name) \(run.setting("schedule")) \(run.setting("epochs")) ep"]
        for key in differing { parts.append("\(key.replacingOccurrences(of: "_", with: "-")) \(run.setting(key))") }
        return parts.joined(separator: ", ")
    }

    static func summarize(_ runs: [RunRecord], label: String) -> ConfigurationSummary {
        let done = runs.filter { !$0.rows.isEmpty }
        let common = done.map { $0.rows.last!.epoch }.min()
        let finals = done.compactMap { run in run.rows.last { $0.epoch <= common! }.map { 100 * (1 - $0.testAccuracy) } }
        let bests = done.map { run in run.rows.min { $0.testAccuracy > $1.testAccuracy }! }
        let mean = finals.isEmpty ? nil : finals.reduce(0, +) / Double(finals.count)
        let std = finals.count < 2 ? nil : (finals.map { ($0 - mean!) * ($0 - mean!) }.reduce(0, +) / Double(finals.count - 1)).squareRoot()
        let rates = done.flatMap { $0.rows.map(\.imagesPerSecond) }.sorted()
        let first = runs[0]
        let modelKey = "\(first.setting("depth")) \(first.setting("cardinality"))x\(first.setting("base_channels"))"
        return ConfigurationSummary(
            label: label, model: first.model, runs: runs.count, seeds: runs.map(\.seed), folders: runs.map(\.folder),
            epochsDone: runs.map(\.epochsDone), epochsPlanned: first.epochsPlanned, comparedAtEpoch: common, finalTestErrors: finals,
            finalTestErrorMean: mean, finalTestErrorStd: std, finalTestErrorMin: finals.min(), finalTestErrorMax: finals.max(),
            bestTestErrors: bests.map { 100 * (1 - $0.testAccuracy) }, bestEpochs: bests.map(\.epoch),
            imagesPerS: rates.isEmpty ? nil : rates[rates.count / 2],
            trainingHoursPerRun: runs.map { $0.rows.map(\.seconds).reduce(0, +) / 3600 }, processes: runs.map(\.processes),
            published: PublishedResult.known[modelKey])
    }

    /// The table: a header and one row per configuration, as text cells.
    public var table: (header: [String], rows: [[String]]) {
        let header = [
            "configuration", "runs (seeds)", "epochs done / planned", "test error (%) at the end, mean ± std", "min / max",
            "best test error (%) @ epoch", "images/s", "training time per run", "published test error (%)",
        ]
        let rows = configurations.map { c -> [String] in
            let seeds = c.seeds.map(String.init).joined(separator: ", ")
            let done = c.epochsDone.map(Self.epochs)
            let epochs = Set(done).count == 1 ? done[0] : done.joined(separator: ", ")
            let running = c.epochsDone.contains { $0 < Double(c.epochsPlanned) } ? " (not finished)" : ""
            let final =
                c.finalTestErrorMean.map { mean in
                    (c.finalTestErrorStd.map { String(format: "%.2f ± %.2f", mean, $0) } ?? String(format: "%.2f", mean))
                        + (c.comparedAtEpoch.map { $0 < c.epochsPlanned ? " (at epoch \($0), the last all runs reached)" : "" } ?? "")
                } ?? "-"
            let range = c.finalTestErrorMin.map { String(format: "%.2f / %.2f", $0, c.finalTestErrorMax!) } ?? "-"
            let best = zip(c.bestTestErrors, c.bestEpochs).map { String(format: "%.2f @ %d", $0, $1) }.joined(separator: ", ")
            return [
                c.label, "\(c.runs) (\(seeds))", "\(epochs) / \(c.epochsPlanned)\(running)", final, range, best.isEmpty ? "-" : best,
                c.imagesPerS.map { String(format: "%.0f", $0) } ?? "-",
                c.trainingHoursPerRun.map { formatDuration($0 * 3600) }.joined(separator: ", "),
                c.published.map { String(format: "%.2f, %@", $0.testErrorPercent, $0.source) } ?? "-",
            ]
        }
        return (header, rows)
    }

    /// summary.md: the table in Markdown, and what its columns mean.
    public var markdown: String {
        let (header, rows) = table
        var lines = ["| " + header.joined(separator: " | ") + " |", "|" + String(repeating: "---|", count: header.count)]
        for row in rows { lines.append("| " + row.map { $0.replacingOccurrences(of: "|", with: "\\|") }.joined(separator: " | ") + " |") }
        lines.append("")
        lines.append(Self.legend)
        return lines.joined(separator: "\n") + "\n"
    }

    static let legend =
        "Test error = 100 - test accuracy at the last epoch, or, while runs are going, at the last epoch all of a row's runs have reached; ± is the sample standard deviation over seeds (n - 1). images/s: median over the epochs of all runs; training time: the sum of a run's epoch times (evaluation and checkpoints add a few per cent). Published figures are for the full schedule (300 epochs); they are set beside runs of the same model whatever their schedule."

    /// Whole epochs as integers, a partial one to two decimals.
    static func epochs(_ e: Double) -> String { e == e.rounded() ? String(Int(e)) : String(format: "%.2f", e) }

    public func json() throws -> String { try snakeCaseJSON(self, pretty: true) }
}
