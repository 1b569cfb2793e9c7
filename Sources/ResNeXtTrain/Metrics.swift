import Foundation
import ResNeXt

/// One row of metrics.jsonl / metrics.csv: the state at the end of an epoch (or of a run cut
/// short by --max-steps).
public struct EpochMetrics: Codable, Equatable, Sendable {
    public var epoch: Int
    public var step: Int
    public var lr: Double
    public var trainLoss: Double
    public var trainAccuracy: Double
    public var testLoss: Double
    public var testAccuracy: Double
    public var seconds: Double
    public var imagesPerSecond: Double

    enum CodingKeys: String, CodingKey {
        case epoch, step, lr
        case trainLoss = "train_loss", trainAccuracy = "train_accuracy"
        case testLoss = "test_loss", testAccuracy = "test_accuracy"
        case seconds
        case imagesPerSecond = "images_per_s"
    }

    public static let csvHeader = "epoch,step,lr,train_loss,train_accuracy,test_loss,test_accuracy,seconds,images_per_s"

    public var csvRow: String {
        String(
            format: "%d,%d,%.6g,%.6f,%.6f,%.6f,%.6f,%.3f,%.2f", epoch, step, lr, trainLoss, trainAccuracy,
            testLoss, testAccuracy, seconds, imagesPerSecond)
    }

    public func jsonLine() throws -> String { try snakeCaseJSON(self) }
}

/// metrics.jsonl and metrics.csv in the run folder. On resume, rows after the checkpoint's
/// epoch (written before a crash) are dropped, so every epoch appears once.
public final class MetricsLog {
    let jsonlPath: String, csvPath: String
    public private(set) var rows: [EpochMetrics] = []

    public init(outdir: String, keepThroughEpoch: Int?) throws {
        jsonlPath = outdir + "/metrics.jsonl"
        csvPath = outdir + "/metrics.csv"
        if let keep = keepThroughEpoch, let text = try? String(contentsOfFile: jsonlPath, encoding: .utf8) {
            rows = text.split(separator: "\n").compactMap {
                try? JSONDecoder().decode(EpochMetrics.self, from: Data($0.utf8))
            }.filter { $0.epoch <= keep }
        }
        try rewrite()
    }

    public func append(_ row: EpochMetrics) throws {
        rows.append(row)
        try rewrite()
    }

    private func rewrite() throws {
        let jsonl = try rows.map { try $0.jsonLine() + "\n" }.joined()
        let csv = ([EpochMetrics.csvHeader] + rows.map(\.csvRow)).joined(separator: "\n") + "\n"
        try writeAtomically(Array(jsonl.utf8), to: jsonlPath)
        try writeAtomically(Array(csv.utf8), to: csvPath)
    }
}

/// A duration as the progress lines and reports print it: "5s", "3m05s", "2h07m".
public func formatDuration(_ seconds: Double) -> String {
    guard seconds.isFinite, seconds >= 0 else { return "?" }
    let s = Int(seconds.rounded())
    if s >= 3600 { return String(format: "%dh%02dm", s / 3600, (s % 3600) / 60) }
    if s >= 60 { return String(format: "%dm%02ds", s / 60, s % 60) }
    return "\(s)s"
}
