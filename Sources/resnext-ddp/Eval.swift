import ArgumentParser
import Foundation
import ResNeXt
import ResNeXtTrain

struct Eval: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Loss and accuracy of a model file over a CIFAR-10 split, in evaluation mode.")

    @Option(help: "Model or checkpoint file (safetensors state_dict).") var weights: String
    @Option(help: "Network depth (default: as recorded in the file, else 29).") var depth: Int?
    @Option(help: "Cardinality (default: as recorded in the file, else 8).") var cardinality: Int?
    @Option(name: .customLong("base-channels"), help: "Base width (default: as recorded in the file, else 64).") var baseChannels: Int?
    @Option(name: .customLong("data-dir"), help: "CIFAR-10 binary folder (default: $RESNEXT_DATA, else ./data/cifar-10-batches-bin).") var dataDir:
        String?
    @Option(help: "test or train.") var split = "test"
    @Option(name: .customLong("batch-size"), help: "Images per forward pass.") var batchSize = 100
    @Option(help: "OpenBLAS threads.") var threads = 1
    @Flag(help: "Print one JSON object {\"loss\", \"accuracy\", \"images\"}.") var json = false

    func validate() throws {
        guard split == "test" || split == "train" else { throw ValidationError("--split must be test or train (got \(split))") }
        guard batchSize >= 1 else { throw ValidationError("--batch-size must be at least 1") }
    }

    func run() throws {
        do {
            setBLASThreads(threads)
            let file = try SafeTensorsFile(path: weights)
            let recorded = ResNeXt<Float>.recordedConfig(file)
            let config = ResNeXtConfig(
                depth: depth ?? recorded?.depth ?? 29, cardinality: cardinality ?? recorded?.cardinality ?? 8,
                baseChannels: baseChannels ?? recorded?.baseChannels ?? 64)
            let net = try ResNeXt<Float>(config, maxBatch: batchSize)
            // checkpoints hold momentum tensors too: only the state_dict entries are required
            try net.loadStateDict(file, strict: file.metadata["checkpoint"] == nil)
            let directory = CIFAR10.defaultDirectory(dataDir)
            let data = try CIFAR10(directory: directory, needTrain: split == "train", needTest: split == "test")
            let part = split == "test" ? data.test : data.train
            let (loss, correct) = Trainer.evaluateShard(net, part, pipeline: ImagePipeline(augment: false, seed: 0), rank: 0, size: 1)
            let n = Double(part.count)
            if json {
                print("{\"loss\": \(loss / n), \"accuracy\": \(correct / n), \"images\": \(part.count)}")
            } else {
                print(
                    String(
                        format: "%@ on %@ (%d images): loss %.4f, accuracy %.2f %% (error %.2f %%)",
                        "\(config)", split, part.count, loss / n, 100 * correct / n, 100 - 100 * correct / n))
            }
        } catch let error as ResNeXtError {
            FileHandleOutput.standardError.write("error: \(error)\n")
            throw ExitCode(1)
        }
    }
}
