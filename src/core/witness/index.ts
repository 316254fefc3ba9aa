// The independent witness (C2SP tlog-witness): its server, its state, and the log-side client.
export { requestCosignature, verifyCosignature, type CosignatureResult, type CosignatureRefusal, type RequestOptions } from './client.ts';
export { cosign, cosignedMessage, cosignerKeyId, cosignerVerifierKey, parseCosignerVerifierKey, parseSignatureLines, COSIGNATURE_V1_TYPE, type CosignatureCheck } from './cosignature.ts';
export { formatAddCheckpointRequest, parseAddCheckpointRequest, RequestFormatError, MAX_PROOF_LINES, MAX_REQUEST_BYTES } from './request.ts';
export { initWitness, isWitnessDir, WitnessStore, WitnessSetupError, type LogStatus } from './state.ts';
export { startWitnessServer, type RunningWitness, type WitnessServerOptions } from './server.ts';
export { Witness, SIZE_CONTENT_TYPE } from './witness.ts';
export { CosignatureCollector, type WitnessEndpoint, type WitnessStatus, type WitnessError, type CollectorOptions, type NewCheckpoint } from './collector.ts';
export { CosignatureLog, COSIGNATURE_DIR, type StoredCosignature } from './cosignature-log.ts';
