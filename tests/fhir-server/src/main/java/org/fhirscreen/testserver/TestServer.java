package org.fhirscreen.testserver;

import ca.uhn.fhir.batch2.api.IJobMaintenanceService;
import ca.uhn.fhir.batch2.jobs.config.Batch2JobsConfig;
import ca.uhn.fhir.batch2.jobs.export.BulkDataExportProvider;
import ca.uhn.fhir.batch2.jobs.imprt.BulkDataImportProvider;
import ca.uhn.fhir.batch2.maintenance.JobMaintenanceServiceImpl;
import ca.uhn.fhir.context.FhirContext;
import ca.uhn.fhir.context.support.IValidationSupport;
import ca.uhn.fhir.jpa.api.config.JpaStorageSettings;
import ca.uhn.fhir.jpa.api.config.ThreadPoolFactoryConfig;
import ca.uhn.fhir.jpa.api.dao.IFhirSystemDao;
import ca.uhn.fhir.jpa.batch2.JpaBatch2Config;
import ca.uhn.fhir.jpa.binary.api.IBinaryStorageSvc;
import ca.uhn.fhir.jpa.binstore.MemoryBinaryStorageSvcImpl;
import ca.uhn.fhir.jpa.config.HapiJpaConfig;
import ca.uhn.fhir.jpa.config.r4.JpaR4Config;
import ca.uhn.fhir.jpa.config.util.HapiEntityManagerFactoryUtil;
import ca.uhn.fhir.jpa.model.config.PartitionSettings;
import ca.uhn.fhir.jpa.model.config.SubscriptionSettings;
import ca.uhn.fhir.jpa.model.dialect.HapiFhirH2Dialect;
import ca.uhn.fhir.jpa.model.dialect.HapiFhirPostgresDialect;
import ca.uhn.fhir.jpa.provider.IJpaSystemProvider;
import ca.uhn.fhir.jpa.provider.JpaCapabilityStatementProvider;
import ca.uhn.fhir.jpa.search.DatabaseBackedPagingProvider;
import ca.uhn.fhir.jpa.subscription.channel.config.SubscriptionChannelConfig;
import ca.uhn.fhir.rest.api.EncodingEnum;
import ca.uhn.fhir.rest.server.IncomingRequestAddressStrategy;
import ca.uhn.fhir.rest.server.RestfulServer;
import ca.uhn.fhir.rest.server.provider.ResourceProviderFactory;
import ca.uhn.fhir.rest.server.util.ISearchParamRegistry;
import jakarta.annotation.PostConstruct;
import jakarta.persistence.EntityManagerFactory;
import java.util.Properties;
import javax.sql.DataSource;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import org.springframework.beans.factory.annotation.Autowired;
import org.springframework.beans.factory.annotation.Value;
import org.springframework.beans.factory.config.ConfigurableListableBeanFactory;
import org.springframework.boot.SpringApplication;
import org.springframework.boot.autoconfigure.SpringBootApplication;
import org.springframework.boot.autoconfigure.elasticsearch.ElasticsearchClientAutoConfiguration;
import org.springframework.boot.autoconfigure.elasticsearch.ElasticsearchRestClientAutoConfiguration;
import org.springframework.boot.autoconfigure.quartz.QuartzAutoConfiguration;
import org.springframework.boot.autoconfigure.thymeleaf.ThymeleafAutoConfiguration;
import org.springframework.boot.web.servlet.ServletRegistrationBean;
import org.springframework.context.annotation.Bean;
import org.springframework.context.annotation.Configuration;
import org.springframework.context.annotation.Import;
import org.springframework.context.annotation.Primary;
import org.springframework.orm.jpa.JpaTransactionManager;
import org.springframework.orm.jpa.LocalContainerEntityManagerFactoryBean;

/**
 * A HAPI FHIR JPA R4 server for fhirscreen's integration tests: H2 (in memory unless HAPI_DB_URL
 * says otherwise), Bulk Data $export with a fast Batch2 scheduler, no search-result reuse, DELETE
 * and $expunge allowed, client-assigned ids, and no referential-integrity check on write.
 *
 * <p>All tunables live in application.properties under the {@code hapi.} prefix and can be overridden
 * on the command line as {@code --hapi.key=value}.
 */
@SpringBootApplication(
		exclude = {
			ThymeleafAutoConfiguration.class,
			QuartzAutoConfiguration.class,
			ElasticsearchRestClientAutoConfiguration.class,
			ElasticsearchClientAutoConfiguration.class
		})
@Import({
	JpaR4Config.class,
	HapiJpaConfig.class,
	JpaBatch2Config.class,
	Batch2JobsConfig.class,
	ThreadPoolFactoryConfig.class,
	SubscriptionChannelConfig.class
})
public class TestServer {

	private static final Logger LOG = LoggerFactory.getLogger(TestServer.class);

	public static void main(String[] args) {
		SpringApplication.run(TestServer.class, args);
	}

	@Bean
	public JpaStorageSettings storageSettings(
			@Value("${hapi.reuse-cached-search-millis:#{null}}") Long reuseCachedSearchMillis,
			@Value("${hapi.job-fast-tracking:true}") boolean jobFastTracking,
			@Value("${hapi.bulk-export-job-reuse:false}") boolean bulkExportJobReuse,
			@Value("${hapi.enforce-referential-integrity:false}") boolean enforceReferentialIntegrity,
			@Value("${hapi.auto-create-placeholders:true}") boolean autoCreatePlaceholders,
			@Value("${hapi.client-id-strategy:ALPHANUMERIC}") JpaStorageSettings.ClientIdStrategyEnum clientIdStrategy,
			@Value("${hapi.mass-ingestion-mode:false}") boolean massIngestionMode) {
		JpaStorageSettings settings = new JpaStorageSettings();
		// null = never hand back a cached search result: tests must see what they just wrote.
		settings.setReuseCachedSearchResultsForMillis(reuseCachedSearchMillis);
		settings.setJobFastTrackingEnabled(jobFastTracking);
		settings.setEnableBulkExportJobReuse(bulkExportJobReuse);
		// Test isolation: DELETE (also conditional, many at once), $expunge and _expunge=true.
		settings.setAllowMultipleDelete(true);
		settings.setExpungeEnabled(true);
		settings.setDeleteExpungeEnabled(true);
		settings.setFetchSizeDefaultMaximum(10000);
		// ndjson can be loaded in any order: a reference may point at a resource that comes later.
		settings.setEnforceReferentialIntegrityOnWrite(enforceReferentialIntegrity);
		settings.setEnforceReferentialIntegrityOnDelete(enforceReferentialIntegrity);
		settings.setAutoCreatePlaceholderReferenceTargets(autoCreatePlaceholders);
		settings.setPopulateIdentifierInAutoCreatedPlaceholderReferenceTargets(autoCreatePlaceholders);
		settings.setResourceClientIdStrategy(clientIdStrategy);
		// HAPI's documented switch for loading a lot of data (the benchmark's big populations): fewer
		// existence checks and cached tag lookups on write. Searches behave the same.
		settings.setMassIngestionMode(massIngestionMode);
		if (clientIdStrategy == JpaStorageSettings.ClientIdStrategyEnum.ANY) {
			// Numeric client ids would collide with server-assigned numeric ids.
			settings.setResourceServerIdStrategy(JpaStorageSettings.IdStrategyEnum.UUID);
		}
		return settings;
	}

	@Bean
	public PartitionSettings partitionSettings() {
		return new PartitionSettings();
	}

	@Bean
	public SubscriptionSettings subscriptionSettings() {
		return new SubscriptionSettings();
	}

	@Bean
	@Primary
	public LocalContainerEntityManagerFactoryBean entityManagerFactory(
			ConfigurableListableBeanFactory beanFactory,
			FhirContext fhirContext,
			JpaStorageSettings storageSettings,
			DataSource dataSource,
			@Value("${spring.datasource.url}") String databaseUrl) {
		LocalContainerEntityManagerFactoryBean emf =
				HapiEntityManagerFactoryUtil.newEntityManagerFactory(beanFactory, fhirContext, storageSettings);
		emf.setPersistenceUnitName("HAPI_PU");
		emf.setDataSource(dataSource);
		Properties jpa = new Properties();
		// The dialect follows the database: H2 (the quick default) or PostgreSQL (as in production).
		boolean postgres = databaseUrl.startsWith("jdbc:postgresql:");
		jpa.put("hibernate.dialect",
				(postgres ? HapiFhirPostgresDialect.class : HapiFhirH2Dialect.class).getName());
		LOG.info("Database: {}", postgres ? "PostgreSQL" : "H2");
		jpa.put("hibernate.hbm2ddl.auto", "update");
		jpa.put("hibernate.search.enabled", "false");
		jpa.put("hibernate.jdbc.batch_size", "20");
		jpa.put("hibernate.format_sql", "false");
		jpa.put("hibernate.show_sql", "false");
		jpa.put("hibernate.cache.use_query_cache", "false");
		jpa.put("hibernate.cache.use_second_level_cache", "false");
		jpa.put("hibernate.cache.use_structured_entries", "false");
		jpa.put("hibernate.cache.use_minimal_puts", "false");
		jpa.put("hibernate.archive.scanner", "org.hibernate.boot.archive.scan.internal.DisabledScanner");
		emf.setJpaProperties(jpa);
		return emf;
	}

	@Bean
	@Primary
	public JpaTransactionManager transactionManager(EntityManagerFactory entityManagerFactory) {
		return new JpaTransactionManager(entityManagerFactory);
	}

	/** Bulk-export output is stored as Binary resources; keeping their bytes in memory is fine here. */
	@Bean
	public IBinaryStorageSvc binaryStorageSvc() {
		return new MemoryBinaryStorageSvcImpl();
	}

	@Bean
	public RestfulServer restfulServer(
			IFhirSystemDao<?, ?> systemDao,
			ResourceProviderFactory resourceProviderFactory,
			IJpaSystemProvider systemProvider,
			BulkDataExportProvider bulkDataExportProvider,
			BulkDataImportProvider bulkDataImportProvider,
			DatabaseBackedPagingProvider pagingProvider,
			JpaStorageSettings storageSettings,
			ISearchParamRegistry searchParamRegistry,
			IValidationSupport validationSupport,
			@Value("${hapi.default-page-size:50}") int defaultPageSize,
			@Value("${hapi.max-page-size:1000}") int maxPageSize,
			@Value("${hapi.bulk-import-enabled:true}") boolean bulkImportEnabled) {
		RestfulServer server = new RestfulServer(systemDao.getContext());
		server.registerProviders(resourceProviderFactory.createProviders());
		server.registerProvider(systemProvider);
		server.registerProvider(bulkDataExportProvider);
		if (bulkImportEnabled) {
			// POST [base]/$import (HAPI's Parameters form of the Bulk Data import manifest): the server
			// pulls NDJSON from URLs and stores it in Batch2 chunks. `fhirscreen load --method import`.
			server.registerProvider(bulkDataImportProvider);
		}
		server.setServerConformanceProvider(new JpaCapabilityStatementProvider(
				server, systemDao, storageSettings, searchParamRegistry, validationSupport));
		pagingProvider.setDefaultPageSize(defaultPageSize);
		pagingProvider.setMaximumPageSize(maxPageSize);
		server.setPagingProvider(pagingProvider);
		server.setDefaultResponseEncoding(EncodingEnum.JSON);
		server.setServerAddressStrategy(new IncomingRequestAddressStrategy());
		return server;
	}

	@Bean
	public ServletRegistrationBean<RestfulServer> fhirServlet(RestfulServer restfulServer) {
		ServletRegistrationBean<RestfulServer> registration = new ServletRegistrationBean<>(restfulServer, "/fhir/*");
		registration.setName("fhir");
		registration.setLoadOnStartup(1);
		return registration;
	}

	/**
	 * Runs the Batch2 maintenance pass (which moves bulk-export jobs along) every second instead of
	 * every minute. It has to be set before the context refresh schedules that job, which a
	 * {@code @PostConstruct} on a configuration class achieves.
	 */
	@Configuration
	public static class FastBatch2Scheduler {

		@Autowired
		private IJobMaintenanceService jobMaintenanceService;

		@Value("${hapi.batch2-maintenance-millis:1000}")
		private long maintenanceMillis;

		@PostConstruct
		public void speedUpMaintenance() {
			if (jobMaintenanceService instanceof JobMaintenanceServiceImpl impl) {
				impl.setScheduledJobFrequencyMillis(maintenanceMillis);
				LOG.info("Batch2 maintenance pass every {} ms", maintenanceMillis);
			} else {
				LOG.warn("Unexpected IJobMaintenanceService {}: maintenance frequency left at its default",
						jobMaintenanceService.getClass().getName());
			}
		}
	}
}
