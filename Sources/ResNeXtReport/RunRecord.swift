import Foundation
import ResNeXt
import ResNeXtTrain

/// One run folder as `train` leaves it, finished or still going: config.json (the settings) and
/// metrics.jsonl (one row per epoch; absent before the first epoch ends).
public struct RunRecord {
    public let folder: String
    /// config.json's "model" ("ResNeXt-29 2x8d") and "processes".
    public let model: String
    public let processes: Int
    /// Optimizer steps per epoch (config.json), to count a partial last epoch (--max-steps, a
    /// checkpoint taken mid-epoch) as the fraction it is.
    public let stepsPerEpoch: Int
    /// config.json's "settings", as written (snake-case keys).
    public let settings: [String: Any]
    public let rows: [EpochMetrics]

    /// Settings that do not change what is trained: where files go, how often to report or
    /// checkpoint, threads, buckets, the stopping point of a rehearsal. The seed is not part of a
    /// configuration either: runs that differ only in these are seeds of one configuration.
    public static let operationalSettings: Set<String> = [
        "seed", "outdir", "data_dir", "resume_path", "init_path", "progress_seconds", "threads", "checkpoint_minutes",
        "checkpoint_steps", "keep_checkpoints", "tensorboard", "check_every", "bucket_mb", "tune_convolutions", "max_steps",
    ]

    /// Settings added after the first runs were written, with the value older runs trained with.
    static let defaults: [String: String] = ["grad_dtype": "fp32"]

    public var seed: Int { (settings["seed"] as? NSNumber)?.intValue ?? 0 }
    public var epochsPlanned: Int { (settings["epochs"] as? NSNumber)?.intValue ?? 0 }
    /// Where a row sits on the epoch axis: its step over the steps per epoch (its epoch number at
    /// an epoch's end).
    public func epochs(at row: EpochMetrics) -> Double {
        stepsPerEpoch > 0 ? Double(row.step) / Double(stepsPerEpoch) : Double(row.epoch)
    }

    /// Epochs trained: the last row's step over the steps per epoch (2.5 after two and a half).
    public var epochsDone: Double {
        rows.last.map(epochs(at:)) ?? 0
    }

    /// The settings that define the configuration, as sorted JSON: equal for seeds of one setup.
    public var configurationKey: String {
        var defining: [String: Any] = Self.defaults
        for (key, value) in settings where !Self.operationalSettings.contains(key) { defining[key] = value }
        let data = (try? JSONSerialization.data(withJSONObject: defining, options: [.sortedKeys])) ?? Data()
        return String(decoding: data, as: UTF8.self)
    }

    /// A setting as text (`0.1`, `cosine`, `150,225`), for labels.
    public func setting(_ key: String) -> String {
        let value: Any? = settings[key] ?? Self.defaults[key]
        switch value {
        case let list as [Any]: return list.map { "\($0)" }.joined(separator: ",")
        case let number as NSNumber: return number.stringValue
        case let text as String: return text
        case nil, is NSNull: return "-"
        default: return "\(value!)"
        }
    }

    public init(folder: String) throws {
        self.folder = folder
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: folder, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw ResNeXtError("\(folder): no such folder: pass run folders, the --outdir of resnext-ddp train")
        }
        let configPath = folder + "/config.json"
        guard let configData = FileManager.default.contents(atPath: configPath) else {
            throw ResNeXtError("\(folder): not a run folder (no config.json): pass run folders, the --outdir of resnext-ddp train")
        }
        guard let config = try? JSONSerialization.jsonObject(with: configData) as? [String: Any],
            let settings = config["settings"] as? [String: Any], let model = config["model"] as? String
        else {
            throw ResNeXtError(
                "\(configPath): not a resnext-ddp config.json (no \"model\" and \"settings\"): the file is damaged or from another tool")
        }
        self.settings = settings
        self.model = model
        processes = (config["processes"] as? NSNumber)?.intValue ?? 1
        stepsPerEpoch = (config["steps_per_epoch"] as? NSNumber)?.intValue ?? 0
        rows = try Self.readMetrics(folder + "/metrics.jsonl")
    }

    /// metrics.jsonl's rows by epoch (a later row of the same epoch replaces an earlier one); no
    /// file is no rows yet. A line that is not a row is an error naming the file and line.
    static func readMetrics(_ path: String) throws -> [EpochMetrics] {
        guard let data = FileManager.default.contents(atPath: path) else { return [] }
        guard let text = String(data: data, encoding: .utf8) else { throw ResNeXtError("\(path): not UTF-8 text: the file is damaged") }
        var byEpoch: [Int: EpochMetrics] = [:]
        for (index, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            if line.allSatisfy(\.isWhitespace) { continue }
            do {
                let row = try JSONDecoder().decode(EpochMetrics.self, from: Data(line.utf8))
                byEpoch[row.epoch] = row
            } catch {
                throw ResNeXtError(
                    "\(path) line \(index + 1): not a metrics row (\(Self.reason(error))): the file is damaged; fix or delete that line")
            }
        }
        return byEpoch.keys.sorted().map { byEpoch[$0]! }
    }

    static func reason(_ error: Error) -> String {
        switch error {
        case DecodingError.keyNotFound(let key, _): return "no \"\(key.stringValue)\""
        case DecodingError.typeMismatch(_, let context), DecodingError.valueNotFound(_, let context):
            return "\"\(context.codingPath.map(\.stringValue).joined(separator: "."))\" has the wrong type"
        case DecodingError.dataCorrupted: return "not JSON"
        default: return "\(error)"
        }
    }
}
